"""The table of docs/EXPERIMENTS.md: every explored variant set against the default of its time.

    git worktree add /tmp/explored a85bfe17bd967689a56f75bb9b1335166ddcec16   # the commit that holds them all
    python -m bench.experiments /tmp/explored/bench      # the markdown table, on stdout

Reads a checkout's ``variants.yaml`` (names, options, the comment on each line) and its results
folders' cells. A variant's baseline is the variant whose options are the largest strict subset
of its own among the defaults AS-DFD had over time and the other methods (``as-dfd-k20-nb`` ->
``as-dfd``, ``knob-lr1e-4`` -> ``as-dfd-pool4096``): the default it changed. Each result is the
mean validation / test accuracy minus the baseline's on the seeds both have, in points, per
dataset and results folder (one teacher per dataset), with the number of seeds.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path

import yaml

FOLDERS = {"": "", "earlier-mr": "earlier mr teacher", "device-trec": "GPU", "gpu-h200": "H200", "mpnet": "MPNet teacher"}
DATASETS = ("trec", "mr", "bbc")
# AS-DFD's defaults, newest first (the first had no mixtures; bf16 runs pair with their own), and the other methods
DEFAULTS = ("as-dfd", "as-dfd-pool4096", "as-dfd-plain-start", "as-dfd-no-mix", "as-dfd-bf16")
METHODS = ("random-text", "modified-zskt", "modified-dafl", "real-kd", "finetune", "general-text")


# what became of a change; by variant, else by its group in variants.yaml
VERDICTS = {
    "as-dfd-pool4096": "previous default; replaced by the newest batch",
    "as-dfd-plain-start": "second default; replaced by boundary starts",
    "as-dfd-no-mix": "first default; mixtures adopted",
    "as-dfd-no-replay": "plain starts on the newest-batch pool: not adopted",
    "as-dfd-boundary8": "not adopted (4 starts kept)",
    "as-dfd-bf16": "level: bf16 is `--precision auto`",
    "real-kd-bf16": "level: bf16 is `--precision auto`",
    "knob-bf16": "level: bf16 is `--precision auto`",
    "as-dfd-shuffle": "pretext task not adopted",
    "as-dfd-shuffle-bs": "pretext task not adopted",
    "as-dfd-shuffle-nb": "pretext task not adopted",
    "as-dfd-rotation-nb": "pretext task not adopted",
}
GROUP_VERDICTS = {
    "ablations": "ablation: the part stays",
    "ablations-now": "ablation: the part stays",
    "ablations-default": "ablation: the part stays",
    "history": "not adopted",
    "knobs": "within seed noise: default kept",
    "real-text": "diagnostic",
    "task-unigram": "diagnostic (reads task data)",
}


def variants(bench: Path) -> dict[str, dict]:
    """name -> {"options", "group", "note"} from variants.yaml, with each line's comment as its note."""
    text = (bench / "variants.yaml").read_text()
    groups = yaml.safe_load(text)
    notes, group_of = {}, {}
    for line in text.splitlines():
        m = re.match(r"\s+([\w.+-]+):.*?(?:#\s*(.*))?$", line)
        if m:
            notes[m.group(1)] = (m.group(2) or "").strip()
    for group, members in groups.items():
        for name in members:
            group_of.setdefault(name, group)
    return {n: {"options": spec or {}, "group": group_of[n], "note": notes.get(n, "")} for g in groups.values() for n, spec in g.items()}


def baseline(name: str, table: dict[str, dict]) -> str | None:
    mine = table[name]["options"]
    subsets = [b for b in (*DEFAULTS, *METHODS) if b in table and b != name and table[b]["options"].items() < mine.items()]
    return max(subsets, key=lambda b: len(table[b]["options"]), default=None)


def cells(results: Path) -> dict[tuple[str, str], dict[int, dict]]:
    out: dict[tuple[str, str], dict[int, dict]] = {}
    for p in sorted((results / "runs").glob("*/*/seed*.json")):
        c = json.loads(p.read_text())
        out.setdefault((c["dataset"], c["variant"]), {})[c["seed"]] = c
    return out


def delta(mine: dict[int, dict], base: dict[int, dict]) -> str | None:
    seeds = sorted(set(mine) & set(base))
    if not seeds:
        return None

    def d(split: str) -> float:
        return 100 * statistics.fmean(mine[s][split]["accuracy"] - base[s][split]["accuracy"] for s in seeds)

    return f"{d('validation'):+.2f} / {d('test'):+.2f} ({len(seeds)})"


def rerun(name: str, by_folder: dict) -> str:
    """The bench arguments that rerun a variant's cells (per results folder it has cells in)."""
    parts = []
    for sub, folder in by_folder.items():
        got = {(ds, seed) for (ds, v), seeds in folder.items() if v == name for seed in seeds}
        if got:
            datasets = ",".join(d for d in DATASETS if any(ds == d for ds, _ in got))
            seeds = ",".join(str(s) for s in sorted({seed for _, seed in got}))
            where = f" --results bench/results/{sub}" if sub else ""
            parts.append(f"`--variants {name} --datasets {datasets} --seeds {seeds}{where}`")
    return "; ".join(parts)


def rows(bench: Path) -> list[dict]:
    table = variants(bench)
    by_folder = {sub: cells(bench / "results" / sub) for sub in FOLDERS if (bench / "results" / sub / "runs").is_dir()}
    out = []
    for name, spec in table.items():
        base = baseline(name, table)
        if base is None:
            continue
        changed = {k: v for k, v in spec["options"].items() if table[base]["options"].get(k) != v}
        results = {}
        for sub, folder in by_folder.items():
            label = FOLDERS[sub]
            for ds in DATASETS:
                if (ds, name) in folder and (ds, base) in folder:
                    got = delta(folder[(ds, name)], folder[(ds, base)])
                    if got:
                        results[f"{ds} ({label})" if label else ds] = got
        verdict = VERDICTS.get(name, GROUP_VERDICTS.get(spec["group"], "not adopted"))
        row = {"variant": name, "group": spec["group"], "note": spec["note"], "baseline": base, "changes": changed, "results": results}
        out.append({**row, "verdict": verdict, "rerun": rerun(name, by_folder)})
    return out


def markdown(found: list[dict]) -> str:
    lines = ["| variant | what it changed (options) | against | Δ validation / Δ test (seeds) | verdict | rerun (`python -m bench ...`) |"]
    lines.append("|---|---|---|---|---|---|")
    for r in found:
        opts = ", ".join(f"`{k}` {v}" for k, v in r["changes"].items())
        res = "; ".join(f"{k} {v}" for k, v in r["results"].items()) or ("no paired cells" if r["rerun"] else "not run")
        note = f"{r['note']} ({opts})" if r["note"] else opts
        lines.append(f"| {r['variant']} | {note.replace('|', '/')} | {r['baseline']} | {res} | {r['verdict']} | {r['rerun'] or '–'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.experiments", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bench", type=Path, help="the bench/ folder of a checkout that holds the explored variants and their cells")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON instead of a markdown table")
    args = ap.parse_args(argv)
    found = rows(args.bench)
    print(json.dumps(found, indent=1) if args.json else markdown(found), end="")


if __name__ == "__main__":
    main()
