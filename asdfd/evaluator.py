"""Accuracy, macro-F1 and per-class accuracy of a classifier on real labelled text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedModel

from .data import Dataset
from .errors import UserError
from .models import load_classifier, load_tokenizer
from .runtime import progress, resolve_device, set_threads


def label_ids(model: PreTrainedModel, labels: list[str]) -> np.ndarray:
    """Map string labels to the model's class ids through its ``label2id``."""
    label2id = {str(k): int(v) for k, v in model.config.label2id.items()}
    unknown = sorted(set(labels) - set(label2id))
    if unknown:
        raise UserError(
            f"labels {unknown[:5]} are not among the model's labels {sorted(label2id)}; pass data whose labels match the model's id2label"
        )
    return np.asarray([label2id[lab] for lab in labels])


@torch.inference_mode()
def predict(model: PreTrainedModel, tokenizer, texts: list[str], max_length: int, batch_size: int = 64, desc: str = "evaluate") -> np.ndarray:
    """Argmax predictions; texts are sorted by length so batches carry little padding."""
    device = next(model.parameters()).device
    model.eval()
    order = np.argsort([len(t) for t in texts], kind="stable")
    preds = np.empty(len(texts), dtype=np.int64)
    for start in progress(range(0, len(texts), batch_size), desc=desc, unit="batch"):
        idx = order[start : start + batch_size]
        enc = tokenizer([texts[i] for i in idx], truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        logits = model(**{k: v.to(device) for k, v in enc.items()}).logits
        preds[idx] = logits.argmax(-1).cpu().numpy()
    return preds


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


def evaluate_model(model: PreTrainedModel, tokenizer, data: Dataset, teacher: PreTrainedModel | None = None, desc: str = "evaluate") -> dict:
    gold = label_ids(model, data.labels)
    preds = predict(model, tokenizer, data.texts, data.max_length, desc=desc)
    id2label = {int(k): v for k, v in model.config.id2label.items()}
    out = {"dataset": data.name, "split": data.split, **metrics(preds, gold, id2label)}
    if teacher is not None:
        t_preds = predict(teacher, tokenizer, data.texts, data.max_length, desc="teacher")
        out["teacher_accuracy"] = float((t_preds == gold).mean())
        out["agreement_with_teacher"] = float((preds == t_preds).mean())
    return out


def evaluate(model_dir: str | Path, data: Dataset, teacher_dir: str | Path | None = None, device: str = "auto", allow_pickle: bool = False) -> dict:
    """Load ``model_dir`` (and optionally a teacher) and evaluate it on ``data``."""
    set_threads()
    dev = resolve_device(device)
    model = load_classifier(model_dir, allow_pickle=allow_pickle).to(dev)
    tokenizer = load_tokenizer(model_dir)
    teacher = load_classifier(teacher_dir, allow_pickle=allow_pickle).to(dev) if teacher_dir else None
    if teacher is not None and teacher.config.id2label != model.config.id2label:
        raise UserError("the teacher's labels differ from the model's; pass the teacher this student was distilled from")
    out = evaluate_model(model, tokenizer, data, teacher)
    out["model"] = str(model_dir)
    return out
