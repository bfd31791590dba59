"""The ablations of AS-DFD's default (and any change of it), set against the default on the same seeds.

    python -m bench.paired [--results bench/results bench/results/earlier-mr] [--out bench/results/paired.md]

A cell is a change of the default when its method is as-dfd, it keeps the default's student
budget (steps, batch) and its pool of the newest batch, and its results folder holds the
default's cell of the same dataset and seed (so the same teacher: `python -m bench` refuses to
mix teachers in a folder). Each row gives, per dataset, the change's mean validation and test
accuracy minus the default's on the same seeds, with the number of seeds; the options that
differ from the default are read from the cells' own resolved configs. Options a cell predates
count at their defaults (a later option's default keeps the earlier behaviour).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from pathlib import Path

from asdfd.config import RETIRED, DistillConfig

from .report import DATASET_ORDER, load_cells

BASE = "as-dfd"
IGNORED = {"seed", "data", "output", "log_dir", "num_processes", "checkpoint_every", "resume", "precision"}


def _changes(cfg: dict, base: dict, defaults: dict) -> dict:
    """The options in which ``cfg`` differs from ``base`` (absent keys at their defaults)."""

    def value(c: dict, k: str):
        return c.get(k, defaults.get(k))

    keys = sorted((set(cfg) | set(base)) - IGNORED - set(RETIRED))  # cells keep options that were later removed
    return {k: value(cfg, k) for k in keys if value(cfg, k) != value(base, k)}


def _on_default_pool(cfg: dict, base: dict) -> bool:
    return (
        cfg.get("method") == BASE
        and cfg.get("replay_size") == cfg.get("batch_size")
        and all(cfg.get(k) == base.get(k) for k in ("student_steps", "batch_size"))
    )


def _delta(cells: list[dict], base: list[dict], split: str) -> float:
    """Mean accuracy of ``cells`` minus that of ``base`` (the default's cells of the same seeds), in points."""
    return 100 * (statistics.fmean(c[split]["accuracy"] for c in cells) - statistics.fmean(b[split]["accuracy"] for b in base))


def paired(folders: list[Path]) -> list[dict]:
    """One row per changed variant: its options and, per (folder, dataset), the paired differences."""
    defaults = dataclasses.asdict(DistillConfig(method=BASE))  # AS-DFD's variants, against its defaults
    rows: dict[str, dict] = {}
    for i, folder in enumerate(folders):
        cells = load_cells(folder)
        base = {(c["dataset"], c["seed"]): c for c in cells if c["variant"] == BASE}
        by: dict[tuple[str, str], list[dict]] = {}
        for c in cells:
            b = base.get((c["dataset"], c["seed"]))
            if c["variant"] != BASE and b is not None and c.get("config") and _on_default_pool(c["config"], b["config"]):
                by.setdefault((c["variant"], c["dataset"]), []).append(c)
        for (variant, dataset), cs in by.items():
            bs = [base[(dataset, c["seed"])] for c in cs]
            row = rows.setdefault(variant, {"variant": variant, "changes": _changes(cs[0]["config"], bs[0]["config"], defaults), "cells": {}})
            column = dataset if i == 0 else f"{dataset} ({folder.name})"  # the first folder's columns go unnamed
            row["cells"][column] = {
                "dataset": dataset,
                "folder": str(folder),
                "seeds": sorted(c["seed"] for c in cs),
                "delta_validation": round(_delta(cs, bs, "validation"), 2),
                "delta_test": round(_delta(cs, bs, "test"), 2),
            }
    for row in rows.values():
        vals = [x["delta_validation"] for x in row["cells"].values()]
        row["mean_delta_validation"] = round(statistics.fmean(vals), 2)
    return sorted(rows.values(), key=lambda r: -r["mean_delta_validation"])


def _column_order(rows: list[dict]) -> list[str]:
    cols = {k: v["dataset"] for r in rows for k, v in r["cells"].items()}
    return sorted(cols, key=lambda k: (DATASET_ORDER.index(cols[k]) if cols[k] in DATASET_ORDER else 99, k))


def markdown(rows: list[dict]) -> str:
    cols = _column_order(rows)
    head = "| variant | options changed | " + " | ".join(cols) + " | mean Δ validation |"
    lines = [head, "|" + "---|" * (len(cols) + 3)]
    for r in rows:
        changed = ", ".join(f"`{k}` {v}" for k, v in r["changes"].items()) or "(none)"
        cells = []
        for col in cols:
            x = r["cells"].get(col)
            cells.append("–" if x is None else f"{x['delta_validation']:+.2f} / {x['delta_test']:+.2f} ({len(x['seeds'])})")
        lines.append(f"| {r['variant']} | {changed} | " + " | ".join(cells) + f" | {r['mean_delta_validation']:+.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.paired", description=__doc__.splitlines()[0])
    p.add_argument("--results", nargs="+", type=Path, default=[Path("bench/results"), Path("bench/results/earlier-mr")])
    p.add_argument("--out", type=Path, default=Path("bench/results/paired.md"))
    args = p.parse_args(argv)
    missing = [str(f) for f in args.results if not (f / "runs").is_dir()]
    if missing:
        raise SystemExit(f"no benchmark cells under {', '.join(missing)}: pass folders that hold runs/ (python -m bench writes them)")
    rows = paired(args.results)
    text = (
        "Changes of AS-DFD's default, each set against the default on the same seeds and teacher: "
        f"Δ validation / Δ test accuracy (points), number of seeds; columns are datasets of {args.results[0]}, and in brackets "
        "of the other folders; the last column is the mean over the columns a change ran in.\n\n" + markdown(rows)
    )
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    main()
