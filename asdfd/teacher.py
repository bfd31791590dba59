"""Fine-tune a base encoder into the classifier a user would bring (used by demos and benchmarks)."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoModelForSequenceClassification, get_linear_schedule_with_warmup

from . import bucketing
from .assets import resolve_base
from .config import TeacherConfig, save_config
from .data import Dataset
from .evaluator import evaluate_model, label_ids
from .models import load_tokenizer
from .runtime import atomic_dir, autocast, check_output_dir, progress, resolve_device, seed_everything, set_threads

REPORT_NAME = "teacher_report.json"
TEXT_GROUP_ROWS = 8  # real texts vary in length far more than pseudo samples: smaller groups pay (docs/PERFORMANCE.md)


def accumulate_gradients(model, tokenizer, enc, lengths: torch.Tensor, idx: np.ndarray, y: torch.Tensor, device, precision: str = "fp32") -> float:
    """Gradients of the mean cross-entropy over the texts ``idx`` into ``model``'s ``.grad``; the
    batch runs as groups of similar length, each padded to its own longest text (on the CPU), which
    is the same gradient at less padding. Returns the loss."""
    loss = 0.0
    for part in bucketing.length_groups(lengths[idx], bucketing.BUCKETS if device.type == "cpu" else 1, TEXT_GROUP_ROWS):
        rows = idx[part.numpy()]
        batch = tokenizer.pad({k: [enc[k][j] for j in rows] for k in ("input_ids", "attention_mask")}, return_tensors="pt")
        with autocast(device, precision):
            logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
        part_loss = F.cross_entropy(logits.float(), y[rows].to(device), reduction="sum") / len(idx)
        part_loss.backward()
        loss += part_loss.item()
    return loss


def train_teacher(
    train: Dataset, validation: Dataset, test: Dataset | None, output: str | Path, cfg: TeacherConfig | None = None, overwrite: bool = False
) -> dict:
    """Fine-tune ``cfg.base`` on ``train``; keep the epoch with the best validation accuracy."""
    cfg = (cfg or TeacherConfig()).validate()
    out = check_output_dir(output, overwrite)
    set_threads()
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    base = resolve_base(cfg.base)
    max_length = cfg.max_length or train.max_length
    for d in (train, validation) + ((test,) if test else ()):
        d.max_length = max_length
    names = train.label_names
    model = AutoModelForSequenceClassification.from_pretrained(
        base,
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
        use_safetensors=True,
        trust_remote_code=False,
    ).to(device)
    tokenizer = load_tokenizer(base)
    y = torch.as_tensor(label_ids(model, train.labels))
    enc = tokenizer(train.texts, truncation=True, max_length=max_length)
    lengths = torch.tensor([len(ids) for ids in enc["input_ids"]])
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = int(np.ceil(len(train) / cfg.batch_size))
    total = steps_per_epoch * cfg.epochs
    sched = get_linear_schedule_with_warmup(opt, int(cfg.warmup * total), total)
    rng = np.random.default_rng(cfg.seed)
    best, best_state, history = -1.0, None, []
    t0 = time.perf_counter()
    for epoch in range(cfg.epochs):
        model.train()
        perm = rng.permutation(len(train))
        bar = progress(range(steps_per_epoch), desc=f"teacher epoch {epoch + 1}/{cfg.epochs}", unit="step")
        for i in bar:
            idx = perm[i * cfg.batch_size : (i + 1) * cfg.batch_size]
            opt.zero_grad(set_to_none=True)
            loss = accumulate_gradients(model, tokenizer, enc, lengths, idx, y, device, cfg.precision)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            if i % 20 == 0:
                bar.set_postfix(loss=f"{loss:.3f}")
        val = evaluate_model(model, tokenizer, validation, desc="validation")["accuracy"]
        history.append({"epoch": epoch + 1, "validation_accuracy": val})
        if val > best:
            best, best_state = val, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    report = {
        "base": str(base),
        "dataset": train.name,
        "config": cfg.to_dict() | {"max_length": max_length},
        "train_size": len(train),
        "splits": {d.split: {"rows": len(d), "selection": d.selection} for d in (train, validation, test) if d is not None},
        "history": history,
        "validation_accuracy": best,
        "train_time_s": round(time.perf_counter() - t0, 1),
    }
    if test is not None:
        report["test_accuracy"] = evaluate_model(model, tokenizer, test, desc="test")["accuracy"]
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / REPORT_NAME).write_text(json.dumps(report, indent=2) + "\n")
        save_config(report["config"], tmp)
    return report
