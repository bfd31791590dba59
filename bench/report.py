"""Turn benchmark cells into the committed summary: a markdown table, JSON, and PNG plots.

Rows are (dataset, variant) with mean +- std over seeds; "% real-kd" divides by the real-data KD
reference of the same dataset (mean over its seeds). Wall times are medians over seeds.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import yaml

HERE = Path(__file__).parent
DATASET_ORDER = ["trec", "mr", "bbc"]


def _variant_order() -> list[str]:
    groups = yaml.safe_load((HERE / "variants.yaml").read_text())
    return [name for group in groups.values() for name in group]


def _method_group() -> list[str]:
    return list(yaml.safe_load((HERE / "variants.yaml").read_text())["methods"])


def _mean_std(xs: list[float]) -> tuple[float, float]:
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def _sort_key(order: list[str]):
    def key(item):
        (dataset, variant) = item
        d = DATASET_ORDER.index(dataset) if dataset in DATASET_ORDER else len(DATASET_ORDER)
        v = order.index(variant) if variant in order else len(order)
        return (d, dataset, v, variant)

    return key


def load_cells(results: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((results / "runs").glob("*/*/seed*.json"))]


def summarize(results: Path) -> list[dict]:
    cells = load_cells(results)
    if not cells:
        print(f"no benchmark cells under {results / 'runs'} yet")
        return []
    order = _variant_order()
    groups: dict[tuple[str, str], list[dict]] = {}
    for c in cells:
        groups.setdefault((c["dataset"], c["variant"]), []).append(c)
    real_kd = {d: 100 * statistics.fmean(c["test"]["accuracy"] for c in cs) for (d, v), cs in groups.items() if v == "real-kd"}
    rows = []
    for dataset, variant in sorted(groups, key=_sort_key(order)):
        cs = groups[(dataset, variant)]
        test_m, test_s = _mean_std([100 * c["test"]["accuracy"] for c in cs])
        val_m, val_s = _mean_std([100 * c["validation"]["accuracy"] for c in cs])
        teacher = 100 * statistics.fmean(c["teacher_test_accuracy"] for c in cs)
        phases = [c.get("phase_time_s") or {} for c in cs]
        rows.append(
            {
                "dataset": dataset,
                "variant": variant,
                "seeds": sorted(c["seed"] for c in cs),
                "test_mean": test_m,
                "test_std": test_s,
                "val_mean": val_m,
                "val_std": val_s,
                "teacher": teacher,
                "pct_teacher": 100 * test_m / teacher,
                "pct_real_kd": (100 * test_m / real_kd[dataset]) if dataset in real_kd else None,
                "synthesis_s": statistics.median(p.get("synthesis", 0.0) for p in phases),
                "student_s": statistics.median(p.get("student", 0.0) for p in phases),
            }
        )
    (results / "summary.json").write_text(json.dumps(rows, indent=2) + "\n")
    md = _pivot(rows) + "\n" + _markdown(rows)
    (results / "summary.md").write_text(md)
    print(md)
    try:
        _plots(rows, cells, results)
    except ImportError:
        print("matplotlib is not installed; plots skipped (pip install matplotlib)")
    return rows


def _markdown(rows: list[dict]) -> str:
    head = (
        "| dataset | variant | seeds | test acc (%) | val acc (%) | % of teacher | % of real-kd | synthesis (s) | student (s) |\n"
        "|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        pct_kd = "" if r["pct_real_kd"] is None else f"{r['pct_real_kd']:.1f}"
        lines.append(
            f"| {r['dataset']} | {r['variant']} | {len(r['seeds'])} | {r['test_mean']:.2f} ± {r['test_std']:.2f} | "
            f"{r['val_mean']:.2f} ± {r['val_std']:.2f} | {r['pct_teacher']:.1f} | {pct_kd} | {r['synthesis_s']:.0f} | {r['student_s']:.0f} |"
        )
    # averages over the datasets, for variants measured on all of them with the same seeds
    by_variant: dict[str, list[dict]] = {}
    for r in rows:
        by_variant.setdefault(r["variant"], []).append(r)
    avg = []
    datasets = sorted({r["dataset"] for r in rows})
    for variant, rs in by_variant.items():
        if len(rs) == len(datasets) > 1 and len({tuple(r["seeds"]) for r in rs}) == 1:
            kd = [r["pct_real_kd"] for r in rs]
            kd_s = f"{statistics.fmean(kd):.1f}" if all(k is not None for k in kd) else ""
            avg.append(
                f"| average | {variant} | {len(rs[0]['seeds'])} | {statistics.fmean(r['test_mean'] for r in rs):.2f} | "
                f"{statistics.fmean(r['val_mean'] for r in rs):.2f} | {statistics.fmean(r['pct_teacher'] for r in rs):.1f} | {kd_s} | | |"
            )
    return head + "\n".join(lines + avg) + "\n"


def _pivot(rows: list[dict]) -> str:
    """The paper's comparison at a glance: methods x datasets, test accuracy mean +- std."""
    datasets = [d for d in DATASET_ORDER if any(r["dataset"] == d for r in rows)]
    cell = {(r["dataset"], r["variant"]): r for r in rows}
    lines = [
        "| method | " + " | ".join(datasets) + " | average |",
        "|---|" + "---|" * (len(datasets) + 1),
        "| teacher | " + " | ".join(f"{next(r['teacher'] for r in rows if r['dataset'] == d):.2f}" for d in datasets) + " | |",
    ]
    for m in _method_group():
        rs = [cell.get((d, m)) for d in datasets]
        if not any(rs):
            continue
        vals = [f"{r['test_mean']:.2f} ± {r['test_std']:.2f} ({len(r['seeds'])})" if r else "–" for r in rs]
        avg = f"{statistics.fmean(r['test_mean'] for r in rs):.2f}" if all(rs) else ""
        lines.append(f"| {m} | " + " | ".join(vals) + f" | {avg} |")
    return "Test accuracy (%), mean ± std over seeds (number of seeds):\n\n" + "\n".join(lines) + "\n"


def _plots(rows: list[dict], cells: list[dict], results: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = _method_group()
    datasets = [d for d in DATASET_ORDER if any(r["dataset"] == d for r in rows)]
    # the paper's methods where the folder has them; else (a sweep, tagged runs) every variant
    shown = [m for m in methods if any(r["variant"] == m for r in rows)] or sorted({r["variant"] for r in rows})
    fig, ax = plt.subplots(figsize=(max(8, 0.6 * len(datasets) * len(shown)), 4.5))
    width = 0.8 / max(1, len(shown))
    for i, m in enumerate(shown):
        xs, ys, es = [], [], []
        for j, d in enumerate(datasets):
            r = next((r for r in rows if r["dataset"] == d and r["variant"] == m), None)
            if r is not None:
                xs.append(j + (i - (len(shown) - 1) / 2) * width)
                ys.append(r["test_mean"])
                es.append(r["test_std"])
        ax.bar(xs, ys, width, yerr=es, capsize=2, label=m)
    for j, d in enumerate(datasets):
        t = next(r["teacher"] for r in rows if r["dataset"] == d)
        ax.hlines(t, j - 0.45, j + 0.45, colors="k", linestyles="dashed", linewidth=1)
    ax.set_xticks(range(len(datasets)), datasets)
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(min(r["test_mean"] for r in rows if r["variant"] in shown) - 5, 100)
    ax.set_title("Student test accuracy (mean ± std over seeds; dashed: teacher)")
    ax.legend(fontsize=8, ncol=min(4, len(shown)), loc="upper center", bbox_to_anchor=(0.5, -0.08))
    fig.tight_layout()
    fig.savefig(results / "accuracy.png", dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 3.6), squeeze=False)
    for ax, d in zip(axes[0], datasets, strict=True):
        for m in shown:
            curves = [c["curve"] for c in cells if c["dataset"] == d and c["variant"] == m and c.get("curve")]
            if not curves:
                continue
            steps = [p["step"] for p in curves[0]]
            mean = [100 * statistics.fmean(cv[k]["test_accuracy"] for cv in curves if len(cv) > k) for k in range(len(steps))]
            ax.plot(steps, mean, marker="o", markersize=3, label=m)
        ax.set_title(d)
        ax.set_xlabel("student step")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
    if axes[0][0].get_legend_handles_labels()[0]:
        axes[0][0].legend(fontsize=7)
    fig.suptitle("Test accuracy over student steps (mean over seeds)")
    fig.tight_layout()
    fig.savefig(results / "curves.png", dpi=120)
    plt.close(fig)
