"""Benchmark cells: dataset x variant x seed -> one JSON each, resumable (finished cells are skipped).

    python -m bench.run --datasets trec,mr,bbc --variants none,random-text,as-dfd --seeds 0
    python -m bench.run --summary            # rebuild bench/results/summary.{json,md} from the cells

Teachers are the demo's cached teachers (MiniLM-L6 fine-tuned per dataset, trained on first use).
Students are judged on the validation split (for choosing settings) and the test split (for reporting).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
import yaml

from asdfd.config import DistillConfig
from asdfd.data import load_dataset
from asdfd.demo import cached_teacher
from asdfd.distiller import Distiller
from asdfd.evaluator import evaluate_model
from asdfd.models import build_student, load_classifier, load_tokenizer, resolve_student_layers

HERE = Path(__file__).parent
RESULTS = HERE / "results"


def load_variants() -> dict:
    return yaml.safe_load((HERE / "variants.yaml").read_text())


def run_cell(dataset: str, variant: str, overrides: dict | None, seed: int, extra: dict) -> dict:
    teacher_dir = cached_teacher(dataset)
    teacher = load_classifier(teacher_dir).eval()
    tokenizer = load_tokenizer(teacher_dir)
    splits = {s: load_dataset(dataset, s) for s in ("validation", "test")}
    cfg = DistillConfig(seed=seed, **{**(overrides or {}), **extra}).validate()
    t0 = time.perf_counter()
    if overrides is None:
        layers = resolve_student_layers(teacher.config.num_hidden_layers, cfg.student_layers)
        student, report = build_student(teacher, layers).eval(), {}
    else:
        result = Distiller(teacher_dir, cfg).run()
        student, report = result.student, result.report
    wall = time.perf_counter() - t0
    evals = {s: evaluate_model(student, tokenizer, d, teacher=teacher, desc=s) for s, d in splits.items()}
    return {
        "dataset": dataset,
        "variant": variant,
        "seed": seed,
        "config": cfg.to_dict() if overrides is not None else None,
        "validation": evals["validation"],
        "test": evals["test"],
        "teacher_test_accuracy": evals["test"]["teacher_accuracy"],
        "distill_wall_time_s": round(wall, 1),
        "phase_time_s": report.get("wall_time_s"),
        "synthesis": report.get("synthesis"),
        "heldout_pseudo_agreement": report.get("heldout_pseudo_agreement"),
        "machine": {"cpu_threads": torch.get_num_threads(), "platform": platform.platform(), "torch": torch.__version__},
    }


def summarize(results: Path = RESULTS) -> list[dict]:
    cells = [json.loads(p.read_text()) for p in sorted((results / "runs").glob("*/*/seed*.json"))]
    groups: dict[tuple[str, str], list[dict]] = {}
    for c in cells:
        groups.setdefault((c["dataset"], c["variant"]), []).append(c)
    rows = []
    for (dataset, variant), cs in sorted(groups.items()):
        test = torch.tensor([c["test"]["accuracy"] for c in cs]) * 100
        val = torch.tensor([c["validation"]["accuracy"] for c in cs]) * 100
        rows.append(
            {
                "dataset": dataset,
                "variant": variant,
                "seeds": sorted(c["seed"] for c in cs),
                "test_mean": float(test.mean()),
                "test_std": float(test.std()) if len(cs) > 1 else 0.0,
                "val_mean": float(val.mean()),
                "teacher": cs[0]["teacher_test_accuracy"] * 100,
                "wall_s": float(torch.tensor([c["distill_wall_time_s"] for c in cs]).median()),
            }
        )
    (results / "summary.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = ["| dataset | variant | seeds | test acc (%) | val acc (%) | teacher (%) | distill wall (s, median) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['variant']} | {len(r['seeds'])} | {r['test_mean']:.2f} ± {r['test_std']:.2f} | "
            f"{r['val_mean']:.2f} | {r['teacher']:.2f} | {r['wall_s']:.0f} |"
        )
    (results / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="trec,mr,bbc")
    ap.add_argument("--variants", default="none,random-text,as-dfd")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--set", nargs="*", default=[], help="extra DistillConfig overrides key=value for every distilled cell")
    ap.add_argument("--tag", default="", help="suffix for the variant name when --set is used")
    ap.add_argument("--summary", action="store_true", help="only rebuild the summary")
    args = ap.parse_args()
    if args.summary:
        summarize()
        return
    variants = load_variants()
    extra = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    for dataset in args.datasets.split(","):
        for name in args.variants.split(","):
            if name not in variants:
                raise SystemExit(f"unknown variant '{name}'; see bench/variants.yaml")
            label = name + (f"+{args.tag}" if args.tag else "")
            for seed in map(int, args.seeds.split(",")):
                out = RESULTS / "runs" / dataset / label / f"seed{seed}.json"
                if out.is_file():
                    print(f"skip {out} (done)")
                    continue
                cell = run_cell(dataset, label, variants[name], seed, extra if variants[name] is not None else {})
                out.parent.mkdir(parents=True, exist_ok=True)
                tmp = out.with_suffix(".tmp")
                tmp.write_text(json.dumps(cell, indent=2) + "\n")
                tmp.rename(out)
                print(
                    f"{dataset} {label} seed{seed}: val {cell['validation']['accuracy']:.4f} test {cell['test']['accuracy']:.4f} "
                    f"({cell['distill_wall_time_s']:.0f}s)"
                )
    summarize()


if __name__ == "__main__":
    main()
