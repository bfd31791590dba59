"""`asdfd evaluate --split all` on a file streams it: memory does not grow with the file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from asdfd.cli import main

from .conftest import LABELS, WORDS

PEAK = """
import json, sys
from asdfd.cli import main
rc = main(sys.argv[1:])
hwm = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM'))
print(json.dumps({"rc": rc, "hwm_kb": hwm}))
"""


def _csv(path: Path, rows: int) -> Path:
    with open(path, "w") as fh:
        fh.write("text,label\n")
        for i in range(rows):
            fh.write(f"{WORDS[i % len(WORDS)]} {WORDS[(7 * i) % len(WORDS)]} {WORDS[(13 * i) % len(WORDS)]},{LABELS[i % 3]}\n")
    return path


def _peak_mb(argv: list[str]) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", PEAK, *argv], env=env, capture_output=True, text=True, check=True).stdout
    res = json.loads(out.strip().splitlines()[-1])
    assert res["rc"] == 0
    return res["hwm_kb"] / 1024


def test_streaming_evaluate_has_bounded_memory(tiny_teacher_dir, tmp_path):
    small, big = _csv(tmp_path / "small.csv", 20_000), _csv(tmp_path / "big.csv", 200_000)
    args = ["evaluate", "--model", str(tiny_teacher_dir), "--split", "all", "--quiet", "--json", "--data"]
    peak_small, peak_big = _peak_mb([*args, str(small)]), _peak_mb([*args, str(big)])
    # 180k more rows: loading them as Python strings and lists would add well over 20 MB
    assert peak_big - peak_small < 20, (peak_small, peak_big)


def test_streaming_matches_in_memory_and_reports_empty_and_long_texts(tiny_teacher_dir, tmp_path, capsys):
    path = tmp_path / "mixed.csv"
    long_text = " ".join(WORDS * 3)  # far beyond 16 tokens
    path.write_text("text,label\n" + "".join(f'"{t}",{LABELS[i % 3]}\n' for i, t in enumerate(["", long_text, "good film", "bad plot", "  "] * 20)))
    assert main(["evaluate", "--model", str(tiny_teacher_dir), "--data", str(path), "--split", "all", "--max-length", "16", "--json", "--quiet"]) == 0
    streamed = json.loads(capsys.readouterr().out)
    assert streamed["n"] == 100 and streamed["empty_texts"] == 40 and streamed["truncated_texts"] == 20
    from asdfd.data import Dataset
    from asdfd.evaluator import evaluate

    texts = ["", long_text, "good film", "bad plot", "  "] * 20
    in_memory = evaluate(tiny_teacher_dir, Dataset("mixed.csv", "all", texts, [LABELS[i % 3] for i in range(100)], 16), device="cpu")
    assert in_memory["accuracy"] == streamed["accuracy"] and in_memory["truncated_texts"] == 20
