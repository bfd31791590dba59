"""Accuracy, macro-F1 and per-class accuracy of a classifier on real labelled text."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedModel

from .data import Dataset, iter_file_chunks
from .errors import UserError
from .models import load_classifier, load_tokenizer
from .onnx_export import OnnxClassifier, is_onnx
from .runtime import progress, resolve_device, set_threads


def unknown_labels(model: PreTrainedModel, labels: list[str]) -> Counter:
    """Rows per label that is not among the model's (``label2id``)."""
    known = {str(k) for k in model.config.label2id}
    return Counter(lab for lab in labels if lab not in known)


def refuse_unknown(model: PreTrainedModel, unknown: Counter) -> None:
    if unknown:
        listed = ", ".join(f"'{lab}' ({n} rows)" for lab, n in unknown.most_common(5)) + (", ..." if len(unknown) > 5 else "")
        known = sorted(str(k) for k in model.config.label2id)
        raise UserError(f"labels {listed} are not among the model's labels {known}; pass data whose labels match the model's id2label")


def label_ids(model: PreTrainedModel, labels: list[str]) -> np.ndarray:
    """Map string labels to the model's class ids through its ``label2id``."""
    refuse_unknown(model, unknown_labels(model, labels))
    label2id = {str(k): int(v) for k, v in model.config.label2id.items()}
    return np.asarray([label2id[lab] for lab in labels])


@torch.inference_mode()
def predict(model: PreTrainedModel, tokenizer, texts: list[str], max_length: int, batch_size: int = 64, desc: str = "evaluate") -> np.ndarray:
    """Argmax predictions; texts are sorted by length so batches carry little padding."""
    return predict_counted(model, tokenizer, texts, max_length, batch_size, desc)[0]


@torch.inference_mode()
def predict_counted(
    model: PreTrainedModel, tokenizer, texts: list[str], max_length: int, batch_size: int = 64, desc: str | None = "evaluate"
) -> tuple[np.ndarray, dict[str, int]]:
    """Predictions, and how many texts were empty or cut at ``max_length`` tokens."""
    logits, counts = logits_counted(model, tokenizer, texts, max_length, batch_size, desc)
    return logits.argmax(-1).numpy(), counts


@torch.inference_mode()
def logits_counted(
    model: PreTrainedModel, tokenizer, texts: list[str], max_length: int, batch_size: int = 64, desc: str | None = "evaluate"
) -> tuple[torch.Tensor, dict[str, int]]:
    """(N, C) float logits on the CPU, and how many texts were empty or cut at ``max_length`` tokens."""
    device = model.device
    model.eval()
    order = np.argsort([len(t) for t in texts], kind="stable")
    out = torch.empty(len(texts), int(model.config.num_labels))
    counts = {"empty": sum(1 for t in texts if not t.strip()), "truncated": 0}
    starts = range(0, len(texts), batch_size)
    for start in progress(starts, desc=desc, unit="batch") if desc else starts:
        idx = order[start : start + batch_size]
        batch = [texts[i] for i in idx]
        enc = tokenizer(batch, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        if enc["input_ids"].shape[1] == max_length:  # some may have been cut: count them
            full = tokenizer(batch, truncation=False)["input_ids"]
            counts["truncated"] += sum(len(ids) > max_length for ids in full)
        out[torch.as_tensor(idx)] = model(**{k: v.to(device) for k, v in enc.items()}).logits.float().cpu()
    return out, counts


def metrics(preds: np.ndarray, gold: np.ndarray, id2label: dict[int, str]) -> dict:
    per_class, f1s = {}, []
    for c in sorted(set(gold.tolist()) | set(preds.tolist())):
        tp = int(((preds == c) & (gold == c)).sum())
        n_gold, n_pred = int((gold == c).sum()), int((preds == c).sum())
        if n_gold:
            per_class[id2label[c]] = tp / n_gold
        prec = tp / n_pred if n_pred else 0.0
        rec = tp / n_gold if n_gold else 0.0
        f1s.append(2 * prec * rec / (prec + rec) if prec + rec else 0.0)
    return {
        "accuracy": float((preds == gold).mean()),
        "macro_f1": float(np.mean(f1s)),
        "per_class_accuracy": per_class,
        "n": int(len(gold)),
    }


def evaluate_model(
    model: PreTrainedModel, tokenizer, data: Dataset, teacher: PreTrainedModel | None = None, desc: str = "evaluate", teacher_tokenizer=None
) -> dict:
    """Accuracy and macro-F1 of ``model`` on ``data``; with a ``teacher`` (which reads with ``teacher_tokenizer``,
    the model's ``tokenizer`` unless given), the teacher's accuracy and the agreement of the two."""
    gold = label_ids(model, data.labels)
    preds, counts = predict_counted(model, tokenizer, data.texts, data.max_length, desc=desc)
    t_tok = teacher_tokenizer or tokenizer
    t_preds = predict(teacher, t_tok, data.texts, data.max_length, desc="teacher") if teacher is not None else None
    return _results(model, data.name, data.split, gold, preds, t_preds, counts)


def _results(model, name: str, split: str, gold, preds, t_preds, counts: dict[str, int]) -> dict:
    id2label = {int(k): v for k, v in model.config.id2label.items()}
    out = {"dataset": name, "split": split, **metrics(preds, gold, id2label), "empty_texts": counts["empty"], "truncated_texts": counts["truncated"]}
    if t_preds is not None:
        out["teacher_accuracy"] = float((t_preds == gold).mean())
        out["agreement_with_teacher"] = float((preds == t_preds).mean())
    return out


def evaluate_stream(
    model: PreTrainedModel, tokenizer, path: str | Path, text_column: str, label_column: str, max_length: int, teacher=None, teacher_tokenizer=None
) -> dict:
    """Evaluate on a whole data file (or save_to_disk folder) read in chunks: memory does not grow with the file
    (beyond one small integer per row for the predictions)."""
    gold, preds, t_preds = [], [], []
    counts = {"empty": 0, "truncated": 0}
    unknown: Counter = Counter()
    bar = progress(desc="evaluate (streaming)", unit="text")
    for texts, labels in iter_file_chunks(path, text_column, label_column):
        unknown += unknown_labels(model, labels)
        if unknown:  # read on only to count them all for the error
            continue
        gold.append(label_ids(model, labels))
        p, c = predict_counted(model, tokenizer, texts, max_length, desc=None)
        preds.append(p)
        counts = {k: counts[k] + c[k] for k in counts}
        if teacher is not None:
            t_preds.append(predict(teacher, teacher_tokenizer or tokenizer, texts, max_length, desc=None))
        bar.update(len(texts))
    bar.close()
    refuse_unknown(model, unknown)
    cat = np.concatenate
    return _results(model, Path(path).name, "all", cat(gold), cat(preds), cat(t_preds) if teacher is not None else None, counts)


def evaluate(
    model_dir: str | Path,
    data: Dataset | str | Path,
    teacher_dir: str | Path | None = None,
    device: str = "auto",
    allow_pickle: bool = False,
    text_column: str = "text",
    label_column: str = "label",
    max_length: int = 128,
) -> dict:
    """Load ``model_dir`` (and optionally a teacher) and evaluate it on ``data``: a loaded split,
    or the path of a data file or folder to stream whole (the ``all`` split, read in chunks)."""
    set_threads()
    dev = resolve_device(device)
    if is_onnx(model_dir):  # an asdfd export, run by onnxruntime on CPU
        model = OnnxClassifier(model_dir)
        tokenizer = load_tokenizer(model.path.parent)
    else:
        model = load_classifier(model_dir, allow_pickle=allow_pickle).to(dev)
        tokenizer = load_tokenizer(model_dir)
    teacher = load_classifier(teacher_dir, allow_pickle=allow_pickle).to(dev) if teacher_dir else None
    teacher_tokenizer = load_tokenizer(teacher_dir) if teacher_dir else None  # a student of another family reads with its own
    if teacher is not None and teacher.config.id2label != model.config.id2label:
        raise UserError("the teacher's labels differ from the model's; pass the teacher this student was distilled from")
    if isinstance(data, Dataset):
        out = evaluate_model(model, tokenizer, data, teacher, teacher_tokenizer=teacher_tokenizer)
    else:
        out = evaluate_stream(model, tokenizer, data, text_column, label_column, max_length, teacher, teacher_tokenizer)
    out["model"] = str(model_dir)
    return out
