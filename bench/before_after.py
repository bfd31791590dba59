"""Before/after a code change: `asdfd distill` wall time of an older checkout against this one.

    git worktree add /tmp/before 402efd6          # the code before the speed work
    python -m bench.before_after /tmp/before      # -> bench/results/before_after.json
    git worktree add /tmp/before-avx2 78377d6     # the code before the AVX2 work, on an AVX2 CPU:
    python -m bench.before_after /tmp/before-avx2 --precisions auto --out bench/results/avx2/before_after.json

Each checkout runs `python -m asdfd distill` from its own folder on the cached trec teacher with
an eighth of the default budget (no held-out check); the runs alternate, 3 of each, and the
medians of the distill report's phase times are kept (process start-up excluded). With
`--what teacher` each runs one epoch of `asdfd train-teacher --data trec` instead (its training
time, validation excluded, and the epoch's validation accuracy; the old code at fp32, the new at
each of ``--precisions``); with `--method lm-text` both
distil with that method (the language model's writing is its synthesis time).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from asdfd.demo import cached_teacher

HERE = Path(__file__).resolve().parent
BUDGET = ["--pseudo-samples", "384", "--student-steps", "75", "--heldout-samples", "0", "--quiet"]


def distill_times(checkout: Path, teacher: Path, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "asdfd", "distill", "--teacher", str(teacher), "--output", f"{tmp}/s", *BUDGET, *extra]
        subprocess.run(cmd, cwd=checkout, check=True)
        return json.loads(Path(f"{tmp}/s/distill_report.json").read_text())["wall_time_s"]


def teacher_times(checkout: Path, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "asdfd", "train-teacher", "--data", "trec", "--epochs", "1", "--output", f"{tmp}/t", "--quiet", *extra]
        subprocess.run(cmd, cwd=checkout, check=True)
        report = json.loads(Path(f"{tmp}/t/teacher_report.json").read_text())
    return {"train": report["train_time_s"], "validation_accuracy": report["validation_accuracy"]}


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.before_after", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("before", type=Path, help="a checkout of the older code")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--precisions", default="fp32,auto", help="the --precision values the new code runs at (the old one runs fp32)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "before_after.json")
    ap.add_argument("--what", choices=("distill", "teacher"), default="distill", help="time distillation (default) or one epoch of teacher training")
    ap.add_argument("--method", default="as-dfd", help="the --method both checkouts distil with")
    args = ap.parse_args()
    teacher = cached_teacher("trec")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=args.before, capture_output=True, text=True).stdout.strip()
    method = ["--method", args.method]
    runs = {f"before ({commit}, fp32)": (args.before, [])}
    for p in args.precisions.split(","):  # distill's precision defaults to auto, train-teacher's to fp32
        flag = [] if p == "auto" and args.what == "distill" else ["--precision", p]
        runs["after, precision auto" if p == "auto" else f"after, {p}"] = (HERE.parent, flag)
    times: dict[str, list[dict]] = {k: [] for k in runs}
    for _ in range(args.reps):
        for name, (checkout, extra) in runs.items():
            times[name].append(distill_times(checkout, teacher, method + extra) if args.what == "distill" else teacher_times(checkout, extra))
            print(name, times[name][-1], flush=True)
    out = {"budget": BUDGET, "method": args.method, "reps": args.reps}
    for name, ts in times.items():
        if args.what == "teacher":
            out["budget"] = "asdfd train-teacher --data trec --epochs 1"
            out[name] = {"train_s": round(statistics.median(t["train"] for t in ts), 1), "runs": ts}
            continue
        out[name] = {
            "distill_s": round(statistics.median(sum(t.values()) for t in ts), 1),
            "synthesis_s": round(statistics.median(t["synthesis"] for t in ts), 1),
            "student_s": round(statistics.median(t["student"] for t in ts), 1),
            "runs": ts,
        }
    path = args.out
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: {m: x for m, x in v.items() if m != "runs"} for k, v in out.items() if isinstance(v, dict)}, indent=1))


if __name__ == "__main__":
    main()
