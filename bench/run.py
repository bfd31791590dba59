"""Benchmark cells: dataset x variant x seed -> one JSON each, resumable (finished cells are skipped).

    python -m bench                                   # trec,mr,bbc x the paper's methods x seeds 0,1,2
    python -m bench --variants ablations --datasets trec --seeds 0
    python -m bench --quick                           # smoke profile, under 10 minutes on 2 CPU cores
    python -m bench --summary                         # rebuild the table and plots from the cells
    python -m bench --variants knobs --datasets trec --seeds 0,1 --jobs 14   # cells side by side (GPU)
    python -m bench --speed                           # the speed benchmark (bench/speed.py)
    python -m bench --sizes --seeds 0                 # the size-quality table (bench/sizes.py)
    python -m bench --sizes --summary                 # the same table from the cells there, none run
    python -m bench --teacher-base mpnet --datasets trec --seeds 0 --results bench/results/mpnet

Variants and groups of them are in bench/variants.yaml. Teachers are the demo's cached teachers
(MiniLM-L6 fine-tuned per dataset, trained on first use; ``--teacher-base`` fine-tunes them from
another encoder, cached apart). Students are judged on the validation
split (for choosing settings) and the test split (for reporting); a test-accuracy curve over
student steps is recorded for every distilled cell. Cells run at fp32 unless a variant sets
``precision``: the package default (``auto``) depends on the machine's bf16 support, a table must not.
With ``--jobs N`` the cells run in N worker processes; on a GPU machine many small cells share one
card well (each keeps the GPU busy only part of the time), on 2 CPU cores it only splits the cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import platform
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import NamedTuple

import torch
import yaml

from asdfd.card import weights_sha256
from asdfd.cli import FLAG_TYPES, defaults_from_config_file
from asdfd.config import RENAMED, DistillConfig, TeacherConfig, typed_value
from asdfd.data import load_dataset
from asdfd.demo import cached_teacher
from asdfd.distiller import Distiller
from asdfd.errors import UserError
from asdfd.evaluator import evaluate_model
from asdfd.models import load_teacher, load_tokenizer
from asdfd.runtime import atomic_write_text
from asdfd.student import build as build_student
from asdfd.synthesizers import REGISTRY, configure
from asdfd.teacher import REPORT_NAME as TEACHER_REPORT

from .report import summarize
from .sizes import METHODS, SIZES, setting
from .sizes import write as write_sizes
from .speed import SECTIONS, run_speed

HERE = Path(__file__).parent
RESULTS = HERE / "results"
CURVE_POINTS = 6  # test accuracy measured this many times over the student steps

# the smoke profile: one dataset, a one-epoch teacher, a tenth of the budget, its own results folder
QUICK = {
    "datasets": "trec",
    "variants": "none,random-text,as-dfd,real-kd",
    "seeds": "0",
    "overrides": {"student_steps": 100, "pseudo_samples": 512, "heldout_samples": 64},
    "teacher": {"epochs": 1},
    "results": RESULTS / "quick",
}


def load_variants() -> tuple[dict, dict[str, list[str]]]:
    """All variants by name, and the groups (top-level keys of variants.yaml) by name."""
    groups = yaml.safe_load((HERE / "variants.yaml").read_text())
    variants = {name: spec for group in groups.values() for name, spec in group.items()}
    return variants, {g: list(v) for g, v in groups.items()}


def expand(names: str, variants: dict, groups: dict[str, list[str]]) -> list[str]:
    out: list[str] = []
    for name in names.split(","):
        if name in groups:
            out += groups[name]
        elif name in variants:
            out.append(name)
        else:
            raise SystemExit(f"unknown variant or group '{name}'; see bench/variants.yaml")
    return list(dict.fromkeys(out))


def parse_set(pairs: list[str]) -> dict:
    """``--set key=value ...`` as DistillConfig overrides, typed like the options (``lr=1e-4`` is a number)."""
    fields = {f.name: f.default for f in dataclasses.fields(DistillConfig)}
    out = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = RENAMED.get(key.replace("-", "_"), key.replace("-", "_"))
        if not sep or key not in fields:
            raise UserError(f"--set {pair}: expected key=value with a DistillConfig option as key (e.g. lr=1e-4)")
        default = FLAG_TYPES[key]() if key in FLAG_TYPES else fields[key]
        out[key] = typed_value(key, yaml.safe_load(raw), default, "--set")
    return out


def cell_config(dataset: str, overrides: dict | None, seed: int, extra: dict) -> DistillConfig:
    """A cell's resolved config: its variant's overrides on the package defaults, at fp32."""
    settings = {"precision": "fp32", **(overrides or {}), **extra}
    settings.pop("wordless_labels", None)  # the bench's own: applied to the teacher in run_cell
    if REGISTRY[settings.get("method", DistillConfig.method)].needs_data:
        settings["data"] = dataset  # the references read this dataset's train split
    return configure(DistillConfig(seed=seed, **settings))


def run_cell(dataset: str, variant: str, overrides: dict | None, seed: int, extra: dict, teacher_cfg: TeacherConfig) -> dict:
    teacher_dir = cached_teacher(dataset, teacher_cfg)
    teacher = load_teacher(teacher_dir)
    if (overrides or {}).get("wordless_labels"):  # as a teacher whose labels carry no words would be (label2id, read by the evaluation, stays)
        teacher.config.id2label = {i: f"LABEL_{i}" for i in range(teacher.config.num_labels)}
    tokenizer = load_tokenizer(teacher_dir)
    splits = {s: load_dataset(dataset, s) for s in ("validation", "test")}
    cfg = cell_config(dataset, overrides, seed, extra)
    curve: list[dict] = []
    every = max(1, cfg.student_steps // CURVE_POINTS)

    def on_step(step: int, student) -> None:
        if step % every == 0 or step == cfg.student_steps:
            acc = evaluate_model(student, student_tokenizer, splits["test"], desc=f"curve@{step}")["accuracy"]
            curve.append({"step": step, "test_accuracy": acc})

    t0 = time.perf_counter()
    if overrides is None:
        start = build_student(cfg.student, teacher, tokenizer)
        student, student_tokenizer, report = start.model.eval(), start.tokenizer, {}
    else:
        distiller = Distiller(teacher_dir, cfg, teacher=teacher, tokenizer=tokenizer)
        student_tokenizer = distiller.plan.tokenizer  # the student's own when it is not a copy of the teacher
        result = distiller.run(on_step=on_step)
        student, report = result.student, result.report
    wall = time.perf_counter() - t0
    evals = {s: evaluate_model(student, student_tokenizer, d, teacher=teacher, desc=s, teacher_tokenizer=tokenizer) for s, d in splits.items()}
    phases = report.get("wall_time_s") or {}
    return {
        "dataset": dataset,
        "variant": variant,
        "seed": seed,
        "config": cfg.to_dict() if overrides is not None else None,
        "teacher_config": teacher_cfg.to_dict(),
        "validation": evals["validation"],
        "test": evals["test"],
        "teacher_test_accuracy": evals["test"]["teacher_accuracy"],
        "teacher_sha256": report.get("teacher_sha256") or weights_sha256(teacher_dir),  # the Distiller hashed it already
        "curve": curve,
        "distill_wall_time_s": round(sum(phases.values()), 1),  # load + synthesis + student + held-out check
        "cell_wall_time_s": round(wall, 1),  # also the learning curve's evaluations
        "phase_time_s": phases or None,
        "synthesis": report.get("synthesis"),
        "heldout_pseudo_agreement": report.get("heldout_pseudo_agreement"),
        "machine": machine_info(report.get("device")),
    }


def machine_info(device: str | None) -> dict:
    """Where a cell ran: the CPU side always, and the device its run used (a GPU by name)."""
    gpu = torch.cuda.get_device_name(torch.device(device)) if device and device.startswith("cuda") else None
    return {"cpu_threads": torch.get_num_threads(), "platform": platform.platform(), "torch": torch.__version__, "device": device, "gpu": gpu}


# teacher training as the committed cells' teachers had it (before its length groups, 85f4dfb, changed its arithmetic
# by about 1e-5 per step): a fresh machine rebuilds them with this commit's code (docs/RESULTS.md, Setting; mr may not repeat)
TEACHERS_COMMIT = "af27cc0"


def teacher_identity(teacher_dir: Path) -> dict:
    """What tells one trained teacher from another: the SHA-256 of its weights, and its test and
    validation accuracies from training. Teacher training repeats on one machine but not to the bit
    across machines, so a rebuilt teacher may differ in its weights' last bits from the one a results
    folder's cells were made with; it is the same teacher when it gets the same answers right."""
    report = json.loads((teacher_dir / TEACHER_REPORT).read_text())
    return {"sha256": weights_sha256(teacher_dir), "test_accuracy": report["test_accuracy"], "validation_accuracy": report.get("validation_accuracy")}


def same_teacher(cell: dict, teacher: dict) -> bool:
    """The cell's teacher is ``teacher``: the same weights, or the same test and validation accuracy
    (a rebuild on another machine; the cell's validation evaluation holds its teacher's accuracy)."""
    if cell.get("teacher_sha256") == teacher["sha256"]:
        return True
    cell_validation, validation = cell.get("validation", {}).get("teacher_accuracy"), teacher["validation_accuracy"]
    same_validation = cell_validation is None or validation is None or abs(cell_validation - validation) < 1e-9
    return abs(cell["teacher_test_accuracy"] - teacher["test_accuracy"]) < 1e-9 and same_validation


def check_same_teacher(results: Path, dataset: str, teacher: dict) -> None:
    """Refuse to add cells to a folder whose cells of ``dataset`` came from another teacher: a table
    that mixes teachers compares nothing."""
    for path in sorted((results / "runs" / dataset).glob("*/seed*.json")):
        cell = json.loads(path.read_text())
        if not same_teacher(cell, teacher):
            raise UserError(
                f"{path} was made with another {dataset} teacher (test accuracy {100 * cell['teacher_test_accuracy']:.2f}; "
                f"the cached one here: {100 * teacher['test_accuracy']:.2f}); pass --results with a separate folder for this teacher's cells, "
                f"or rebuild the cached teacher with the code at {TEACHERS_COMMIT} (docs/RESULTS.md, Setting)"
            )


SETTING = "setting.json"  # in a results folder: the --set overrides its untagged cells were made with


def folder_setting(results: Path) -> dict:
    """The overrides every untagged distilled cell of a results folder was made with ({} by default)."""
    path = results / SETTING
    return {RENAMED.get(k, k): v for k, v in json.loads(path.read_text())["set"].items()} if path.is_file() else {}


def check_same_setting(results: Path, overrides: dict) -> None:
    """Untagged cells of one folder share one setting (e.g. ``--set student=1`` for the 1-layer
    student), so a variant's name means one thing in its table; the first run records it."""
    have = folder_setting(results)
    if overrides == have:
        return
    if (results / SETTING).is_file() or any((results / "runs").glob("*/*/seed*.json")):
        raise UserError(
            f"{results} holds cells made with --set {have or 'nothing'}, not {overrides or 'nothing'}; pass --tag to name these cells apart "
            "or --results with a separate folder for this setting"
        )
    results.mkdir(parents=True, exist_ok=True)
    atomic_write_text(results / SETTING, json.dumps({"set": overrides}, indent=2) + "\n")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="trec,mr,bbc")
    ap.add_argument("--variants", default="methods", help="variant names and/or groups from bench/variants.yaml (default: methods)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--set", nargs="*", default=[], help="extra DistillConfig overrides key=value for every distilled cell")
    ap.add_argument("--tag", default="", help="suffix for the variant name when --set is used")
    ap.add_argument("--quick", action="store_true", help="smoke profile (trec, 4 methods, 1 seed, 100 steps) into bench/results/quick")
    ap.add_argument("--results", type=Path, default=None, help="results folder (default: bench/results)")
    ap.add_argument(
        "--teacher-base",
        default="minilm",
        help="the encoder the teachers are fine-tuned from: minilm (default), mpnet or a folder; its cells need a --results folder of their own",
    )
    ap.add_argument(
        "--teacher-precision",
        default="fp32",
        choices=("fp32", "bf16"),
        help="how the teachers train on first use: fp32 (default; they rebuild alike across machines) or bf16 (large encoders, AMX CPUs)",
    )
    ap.add_argument("--jobs", type=int, default=1, help="cells run side by side in this many worker processes (default 1)")
    ap.add_argument("--summary", action="store_true", help="only rebuild the summary table and plots")
    ap.add_argument("--sizes", action="store_true", help="the size-quality table (bench/sizes.py): every student row's missing cells, then the table")
    ap.add_argument("--speed", action="store_true", help="run the speed benchmark instead (bench/speed.py) into RESULTS/speed.{json,md}")
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"speed sections to run (default: {','.join(SECTIONS)})")
    ap.add_argument("--reps", type=int, default=7, help="speed: repetitions per timing (medians are reported)")
    ap.add_argument("--fresh", action="store_true", help="speed: rerun the --sections named already run; --sizes: measure speeds again")
    ap.add_argument(
        "--isa", default="native,avx2", help="speed: native (into RESULTS) and/or avx2 (as an AVX2-only CPU, into RESULTS/avx2); default both"
    )
    ap.add_argument("--config", default=None, help="YAML file of these options by name (lists as strings: seeds: '0,1,2'); flags win")
    pre, _ = ap.parse_known_args(argv)
    if pre.config:
        try:
            defaults_from_config_file(ap, pre.config, "python -m bench")
        except UserError as e:
            raise SystemExit(f"bench: error: {e}") from None
    args = ap.parse_args(argv)
    base = "" if args.teacher_base == "minilm" else args.teacher_base  # "": the packaged MiniLM under the demo's cache key
    teacher_cfg = TeacherConfig(base=base, precision=args.teacher_precision, **(QUICK["teacher"] if args.quick else {}))
    overrides, results = {}, args.results or RESULTS
    if args.quick:
        args.datasets, args.variants, args.seeds = QUICK["datasets"], QUICK["variants"], QUICK["seeds"]
        overrides, results = QUICK["overrides"], args.results or QUICK["results"]
    if args.summary and args.sizes:  # the size table from the cells there, none run
        print(write_sizes(results, args.teacher_base, args.reps, args.fresh)["teacher"])
        return
    if args.summary:
        summarize(results)
        return
    if args.speed:
        unknown = sorted(set(args.sections.split(",")) - set(SECTIONS))
        if unknown:
            raise SystemExit(f"bench: error: unknown speed sections {unknown}; choose from {','.join(SECTIONS)}")
        isas = tuple(args.isa.split(","))
        if not isas or set(isas) - {"native", "avx2"}:
            raise SystemExit(f"bench: error: --isa takes native, avx2 or both, got '{args.isa}'")
        run_speed(results, args.sections.split(","), args.reps, args.fresh, isas)
        return
    if args.jobs < 1:
        raise SystemExit(f"bench: error: --jobs must be >= 1, got {args.jobs}")
    if args.sizes:  # every student row of this teacher: its cells in its own folder, then the table
        if args.teacher_base not in SIZES:
            raise SystemExit(f"bench: error: --sizes has rows for the teacher bases {', '.join(SIZES)}, not '{args.teacher_base}'")
        plans = [
            (results / folder, [f"student={spec}"] if setting(spec) else [], "", "none," + ",".join(METHODS))
            for _, spec, folder in SIZES[args.teacher_base]
        ]
    else:
        plans = [(results, args.set, args.tag, args.variants)]
    pending = []
    for folder, set_, tag, names in plans:
        pending += plan_cells(folder, args.datasets, names, args.seeds, set_, tag, overrides, teacher_cfg)
    failed = run_cells(pending, args.jobs)
    for folder in dict.fromkeys(c.out.parents[3] for c in pending):
        summarize(folder)
    if failed:
        raise SystemExit(f"bench: {failed} of {len(pending)} cells failed (see above); rerun to retry only those")
    if args.sizes:
        print(write_sizes(results, args.teacher_base, args.reps, args.fresh)["rows"][0])


def plan_cells(
    results: Path, datasets: str, names: str, seeds: str, set_: list[str], tag: str, overrides: dict, teacher_cfg: TeacherConfig
) -> list[Cell]:
    """The cells of one results folder not run yet, after the folder's setting and teachers are checked."""
    variants, groups = load_variants()
    try:
        extra = {**overrides, **parse_set(set_)}
        if not tag:
            check_same_setting(results, parse_set(set_))
    except UserError as e:
        raise SystemExit(f"bench: error: {e}") from None
    pending = []
    for dataset in datasets.split(","):
        for name in expand(names, variants, groups):
            label = name + (f"+{tag}" if tag else "")
            for seed in map(int, seeds.split(",")):
                out = results / "runs" / dataset / label / f"seed{seed}.json"
                if out.is_file():
                    print(f"skip {out} (done)")
                    continue
                # the untrained student ("none") takes only the folder's student from the setting
                own = extra if variants[name] is not None else {k: v for k, v in extra.items() if k == "student"}
                pending.append(Cell(dataset, label, variants[name], seed, own, teacher_cfg, out))
    try:
        for dataset in dict.fromkeys(c.dataset for c in pending):  # a missing teacher is trained once, here, not by every worker
            check_same_teacher(results, dataset, teacher_identity(cached_teacher(dataset, teacher_cfg)))
    except UserError as e:
        raise SystemExit(f"bench: error: {e}") from None
    return pending


class Cell(NamedTuple):
    """One pending cell: run_cell's arguments and where its JSON goes."""

    dataset: str
    label: str
    overrides: dict | None
    seed: int
    extra: dict
    teacher_cfg: TeacherConfig
    out: Path


def run_and_save(c: Cell) -> None:
    cell = run_cell(c.dataset, c.label, c.overrides, c.seed, c.extra, c.teacher_cfg)
    c.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(c.out, json.dumps(cell, indent=2) + "\n")
    print(
        f"{c.dataset} {c.label} seed{c.seed}: val {cell['validation']['accuracy']:.4f} test {cell['test']['accuracy']:.4f} "
        f"({cell['distill_wall_time_s']:.0f}s)",
        flush=True,
    )


def _worker_threads(jobs: int) -> None:
    """Share the cores out among the workers. The environment variable makes the share binding: the
    library's set_threads() (run by the Distiller) would raise a share equal to torch's own default
    count back to all the cores, and N workers x all the cores oversubscribe the CPU (several times slower)."""
    n = max(1, (os.cpu_count() or 1) // jobs)
    os.environ["OMP_NUM_THREADS"] = str(n)
    torch.set_num_threads(n)


def run_cells(pending: list[Cell], jobs: int) -> int:
    """Run the cells, in ``jobs`` worker processes when > 1 (their teachers trained already);
    returns how many failed (a failed cell writes nothing, so a rerun retries it)."""
    if jobs == 1:
        for cell in pending:
            run_and_save(cell)
        return 0
    failed = 0
    ctx = multiprocessing.get_context("spawn")  # CUDA cannot be used in forked children
    with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_worker_threads, initargs=(jobs,)) as pool:
        futures = {pool.submit(run_and_save, cell): cell for cell in pending}
        for done in as_completed(futures):
            if done.exception() is not None:
                failed += 1
                c = futures[done]
                trace = "".join(traceback.format_exception(done.exception()))  # the worker's own traceback is its cause
                print(f"FAILED {c.dataset} {c.label} seed{c.seed}:\n{trace}", flush=True)
    return failed


if __name__ == "__main__":
    main()
