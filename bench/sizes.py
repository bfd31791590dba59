"""The size-quality table: for each teacher, students of several sizes with their parameters, their
batch-32 CPU throughput relative to the teacher, and the test accuracy (mean over the seeds there)
of AS-DFD, random text and real-data KD at the shared budget.

    python -m bench --sizes --seeds 0                       # the MiniLM-L6 teacher's rows
    python -m bench --sizes --teacher-base mpnet --seeds 0  # the MPNet teacher's rows (a GPU job)
    python -m bench --sizes --summary                       # only the table, from the cells there

Each student keeps its cells in a results folder of its own (one ``--set student=...`` per folder,
like bench/results/minilm-l1); ``--sizes`` runs the cells missing there (finished ones are
skipped, so it resumes), then measures speed and writes bench/results/sizes/<teacher>.{json,md}
and a plot. Speed is measured on the packaged base encoder with a fresh head (speed does not
depend on the weights), sequences of 64 word pieces, fp32, teacher and students timed in turn.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification

from asdfd.assets import BASES
from asdfd.models import load_tokenizer
from asdfd.runtime import atomic_write_text
from asdfd.student import build as build_student

from .speed import forward_fn, interleaved

# teacher base -> (row label, --student spec, results folder under bench/results); "." is the main folder
SIZES: dict[str, list[tuple[str, str, str]]] = {
    "minilm": [
        ("3 copied layers", "3", "."),
        ("MiniLM-L3 (packaged)", "minilm-l3", "packaged-l3"),
        ("2 copied layers", "2", "minilm-l2"),
        ("1 copied layer", "1", "minilm-l1"),
    ],
    "mpnet": [
        ("6 copied layers", "6", "mpnet-l6"),
        ("3 copied layers", "3", "mpnet"),
        ("MiniLM-L6 (packaged)", "minilm", "mpnet-minilm"),
    ],
}
METHODS = ("as-dfd", "random-text", "real-kd")
DATASETS = ("trec", "mr", "bbc")


def setting(spec: str) -> dict:
    """The ``--set`` of a row's folder: none for the package default student."""
    return {} if spec == "3" else {"student": spec}


def speeds(base: str, reps: int) -> dict[str, dict]:
    """Parameters and batch-32 throughput of the teacher architecture and each row's student."""
    folder = BASES[base]()
    teacher = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=6).eval()
    tokenizer = load_tokenizer(folder)
    students = {label: build_student(spec, teacher, tokenizer) for label, spec, _ in SIZES[base]}
    text = "What is the name of the longest river that flows through the capital city of the country ?"
    fns, out = {}, {}
    for name, model, tok in [("teacher", teacher, tokenizer), *((k, s.model.eval(), s.tokenizer) for k, s in students.items())]:
        enc = dict(tok([text] * 32, padding="max_length", truncation=True, max_length=64, return_tensors="pt"))
        fns[name] = forward_fn(model, enc, "fp32")
        out[name] = {"parameters": sum(p.numel() for p in model.parameters())}
    times = interleaved(fns, reps)
    for name, t in times.items():
        out[name] |= {"batch32_s": round(t, 4), "throughput_per_s": round(32 / t, 1), "speedup": round(times["teacher"] / t, 2)}
    return out


def accuracy(folder: Path, dataset: str, method: str) -> dict | None:
    """Mean test accuracy (%) of a folder's cells for one dataset and method, with the seeds it holds."""
    cells = [json.loads(p.read_text()) for p in sorted((folder / "runs" / dataset / method).glob("seed*.json"))]
    if not cells:
        return None
    return {"test": round(100 * sum(c["test"]["accuracy"] for c in cells) / len(cells), 2), "seeds": [c["seed"] for c in cells]}


def kept_speeds(path: Path, base: str) -> dict[str, dict] | None:
    """The speeds of an earlier table of the same rows (measured on a quiet machine), if there is one."""
    if not path.is_file():
        return None
    old = json.loads(path.read_text())
    keys = ("parameters", "batch32_s", "throughput_per_s", "speedup")
    speed = {"teacher": old["teacher"]} | {r["student"]: {k: r[k] for k in keys} for r in old["rows"]}
    return speed if all(label in speed for label, _, _ in SIZES[base]) else None


def write(results: Path, base: str, reps: int, fresh: bool = False) -> dict:
    """The table of ``base``'s rows from the cells in ``results``; speeds are measured when there
    are none yet for these rows or ``fresh`` asks, and kept from the earlier table otherwise (so
    that adding cells while other work runs does not remeasure on a busy machine)."""
    target = results / "sizes"
    speed = None if fresh else kept_speeds(target / f"{base}.json", base)
    speed = speed or speeds(base, reps)
    rows = []
    for label, spec, folder in SIZES[base]:
        acc = {d: {m: accuracy(results / folder, d, m) for m in METHODS} for d in DATASETS}
        both = [d for d in DATASETS if acc[d]["as-dfd"] and acc[d]["real-kd"]]
        shares = [acc[d]["as-dfd"]["test"] / acc[d]["real-kd"]["test"] for d in both]
        rows.append(
            {
                "student": label,
                "spec": spec,
                "folder": folder,
                **speed[label],
                "accuracy": acc,
                "as_dfd_share_of_real_kd": round(100 * sum(shares) / len(shares), 1) if shares else None,
                "share_datasets": both,
            }
        )
    out = {
        "teacher_base": base,
        "teacher": speed["teacher"],
        "rows": rows,
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
    }
    target.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target / f"{base}.json", json.dumps(out, indent=2) + "\n")
    atomic_write_text(target / f"{base}.md", markdown(out))
    plot(out, target / f"{base}.png")
    return out


def _cell(a: dict | None) -> str:
    return "-" if a is None else f"{a['test']:.2f}" + ("" if len(a["seeds"]) == 1 else f" ({len(a['seeds'])})")


def markdown(out: dict) -> str:
    t = out["teacher"]
    lines = [
        f"Teacher: {out['teacher_base']} ({t['parameters'] / 1e6:.1f}M parameters, {t['throughput_per_s']:.0f} texts/s at batch 32, "
        f"64 word pieces, fp32, {out['threads']} threads). Test accuracy (%) AS-DFD / random text / real-data KD; "
        "a count in brackets: seeds averaged; -: not run yet.",
        "",
        "| student | parameters | speed-up | " + " | ".join(DATASETS) + " | AS-DFD % of real-data KD |",
        "|---|---|---|" + "---|" * len(DATASETS) + "---|",
    ]
    for r in out["rows"]:
        accs = " | ".join(" / ".join(_cell(r["accuracy"][d][m]) for m in METHODS) for d in DATASETS)
        share = "-" if r["as_dfd_share_of_real_kd"] is None else f"{r['as_dfd_share_of_real_kd']:.1f}"
        if r["share_datasets"] and len(r["share_datasets"]) < len(DATASETS):
            share += f" ({', '.join(r['share_datasets'])} only)"
        lines.append(f"| {r['student']} | {r['parameters'] / 1e6:.1f}M | {r['speedup']:.2f}x | {accs} | {share} |")
    return "\n".join(lines) + "\n"


def plot(out: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method, marker in zip(METHODS, "osx", strict=True):
        xs, ys = [], []
        for r in out["rows"]:
            vals = [r["accuracy"][d][method]["test"] for d in DATASETS if r["accuracy"][d][method]]
            if vals:
                xs.append(r["speedup"])
                ys.append(sum(vals) / len(vals))
        ax.scatter(xs, ys, marker=marker, label=method)
    for r in out["rows"]:
        ax.annotate(r["student"], (r["speedup"], 0), xycoords=("data", "axes fraction"), rotation=90, fontsize=7, va="bottom")
    ax.set_xlabel("speed-up over the teacher (batch 32, CPU)")
    ax.set_ylabel("test accuracy, mean over the datasets run (%)")
    ax.set_title(f"students of the {out['teacher_base']} teacher")
    ax.legend()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
