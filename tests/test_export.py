"""`asdfd export --format onnx`: the graph gives PyTorch's logits under onnxruntime (to 1e-4) on
texts and batch shapes it was not traced with; the int8 copy is scored by `asdfd evaluate`."""

from __future__ import annotations

import json
import random

import numpy as np
import onnxruntime as ort
import pytest
import torch

from asdfd.cli import main
from asdfd.models import load_classifier, load_tokenizer
from asdfd.onnx_export import INT8_NAME, ONNX_NAME, TOLERANCE

from .conftest import WORDS


def _texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 40))) for _ in range(n)]


def _max_diff(model_dir, onnx_file, texts: list[str]) -> float:
    model, tok = load_classifier(model_dir).eval(), load_tokenizer(model_dir)
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    limit = min(60, model.config.max_position_embeddings - 2)
    enc = tok(texts, padding=True, truncation=True, max_length=limit, return_tensors="pt")
    with torch.no_grad():
        ref = model(**enc).logits.numpy()
    got = session.run(["logits"], {n: enc[n].numpy() for n in names})[0]
    assert got.shape == ref.shape
    return float(np.abs(got - ref).max())


def test_onnx_matches_pytorch_and_int8_is_evaluated(tiny_teacher_dir, tiny_csv, tmp_path, capsys):
    out = tmp_path / "onnx"
    assert main(["export", "--model", str(tiny_teacher_dir), "--output", str(out), "--quantize", "int8", "--quiet"]) == 0
    assert {ONNX_NAME, INT8_NAME, "config.json", "export_report.json"} <= {p.name for p in out.iterdir()}
    report = json.loads((out / "export_report.json").read_text())
    assert report["max_abs_diff"] <= TOLERANCE and report["inputs"][:2] == ["input_ids", "attention_mask"]
    for batch, seed in ((1, 1), (7, 2), (33, 3)):  # batch sizes and lengths the trace never saw
        assert _max_diff(tiny_teacher_dir, out / ONNX_NAME, _texts(batch, seed)) <= TOLERANCE
    assert report["files"][INT8_NAME] < report["files"][ONNX_NAME]

    results = {}
    for name, model in (("torch", tiny_teacher_dir), ("onnx", out), ("int8", out / INT8_NAME)):
        capsys.readouterr()
        assert main(["evaluate", "--model", str(model), "--data", str(tiny_csv), "--split", "all", "--json", "--quiet"]) == 0
        results[name] = json.loads(capsys.readouterr().out)
    assert results["onnx"]["accuracy"] == results["torch"]["accuracy"] and results["onnx"]["n"] == 60
    assert 0.0 <= results["int8"]["accuracy"] <= 1.0 and results["int8"]["n"] == 60


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--quantize", "int4"], "--quantize 'int4' is not supported"),
        (["--output", "{full}"], "not empty"),
    ],
)
def test_bad_export_requests_fail_cleanly(tiny_teacher_dir, tmp_path, capsys, extra, needle):
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("user data")
    argv = ["export", "--model", str(tiny_teacher_dir), *[a.format(full=full) for a in extra], "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1
    assert (full / "keep.txt").read_text() == "user data" and len(list(full.iterdir())) == 1
    assert not (tmp_path / f"{tiny_teacher_dir.name}-onnx").exists()


@pytest.mark.parametrize("family", ["mpnet", "roberta"])
def test_other_families_export(family, tmp_path):
    from . import test_families

    torch.manual_seed(0)
    model, tok = getattr(test_families, f"_{family}")()
    folder = tmp_path / family
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    assert main(["export", "--model", str(folder), "--quiet"]) == 0
    assert _max_diff(folder, tmp_path / f"{family}-onnx" / ONNX_NAME, _texts(5, 4)) <= TOLERANCE
