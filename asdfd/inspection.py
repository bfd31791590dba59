"""``asdfd inspect``: what do a run's pseudo samples look like?

It crafts fresh pseudo samples with the run's own config, teacher and final student (the same
process that made the training samples, with a different seed), then writes into ``--output``:

- ``pseudo_samples.txt``: each sample decoded to its nearest vocabulary word pieces, with the
  teacher's label and confidence;
- ``class_histogram.png``: the teacher's labels over every sample crafted during the run (from the
  report) and over the fresh ones;
- ``features.png``: a 2-D PCA of the teacher's [CLS] features, pseudo samples against real texts
  when ``--data`` is given (else pseudo samples alone), coloured by the teacher's label.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from . import synthesizers
from .config import CONFIG_FILE, DistillConfig, read_config_file
from .data import Dataset
from .distiller import REPORT_NAME
from .errors import UserError
from .models import TokenSpace, load_classifier, load_teacher, load_tokenizer
from .runtime import atomic_dir, autocast, check_output_dir, resolve_device, seed_everything, set_threads
from .student import Student, fit_bridge, reads_teacher_space
from .synthesizers import PseudoBatch


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError("inspect draws with matplotlib; pip install matplotlib") from None
    return plt


def load_run(run: Path) -> tuple[DistillConfig, dict]:
    for name in (REPORT_NAME, CONFIG_FILE):
        if not (run / name).is_file():
            raise UserError(f"'{run}' has no {name}; pass --run a student folder written by asdfd distill")
    report = json.loads((run / REPORT_NAME).read_text())
    try:
        cfg = DistillConfig(**read_config_file(run / CONFIG_FILE))
    except TypeError as e:
        raise UserError(f"'{run / CONFIG_FILE}' does not match this version of asdfd ({e}); inspect a run made by this version") from None
    if synthesizers.REGISTRY.get(cfg.method) is None or synthesizers.REGISTRY[cfg.method].needs_data:
        raise UserError(f"run '{run}' used method '{cfg.method}', which makes no pseudo samples; inspect a data-free run")
    return synthesizers.configure(cfg), report


@torch.inference_mode()
def cls_features(model, embeds: torch.Tensor, attn: torch.Tensor, precision: str) -> torch.Tensor:
    with autocast(embeds.device, precision):
        hidden = model.base_model(inputs_embeds=embeds, attention_mask=attn).last_hidden_state
    return hidden[:, 0].float().cpu()


def decode(space: TokenSpace, tokenizer, embeds: torch.Tensor, slot: torch.Tensor) -> list[str]:
    ids = space.nearest(embeds)
    return [tokenizer.decode(row[mask].tolist()) for row, mask in zip(ids.cpu(), slot.cpu(), strict=True)]


def pca_2d(x: torch.Tensor) -> torch.Tensor:
    x = x - x.mean(0, keepdim=True)
    _, _, v = torch.pca_lowrank(x, q=2, center=False)
    return x @ v[:, :2]


def inspect_run(
    run: str | Path,
    output: str | Path,
    n: int = 256,
    data: Dataset | None = None,
    teacher_dir: str | Path | None = None,
    overwrite: bool = False,
    seed: int = 1,
) -> dict:
    """Craft ``n`` fresh pseudo samples as the run did and write the three views into ``output``."""
    run, output = Path(run), Path(output)
    cfg, report = load_run(run)
    if n <= 0:
        raise UserError(f"--n must be a positive number of pseudo samples, got {n}")
    check_output_dir(output, overwrite)
    with atomic_dir(output) as tmp:
        out = _inspect(run, tmp, cfg, report, n, data, Path(teacher_dir or report["teacher"]), seed)
    return {**out, "output": str(output)}


def _inspect(run: Path, output: Path, cfg: DistillConfig, report: dict, n: int, data: Dataset | None, teacher_dir: Path, seed: int) -> dict:
    set_threads()
    plt = _pyplot()
    device = resolve_device(cfg.device)
    generator = seed_everything(seed)
    teacher = load_teacher(teacher_dir, cfg.allow_pickle).to(device)
    tokenizer = load_tokenizer(teacher_dir)
    student = load_classifier(run).to(device).eval()
    space = TokenSpace.from_teacher(teacher, tokenizer)
    reader = Student(student, None, [], {})
    if not reads_teacher_space(student, teacher):  # it read the run's pseudo samples through its input bridge
        reader.bridge = fit_bridge(teacher.cpu(), tokenizer, student.cpu(), load_tokenizer(run))[0]
        teacher.to(device), reader.to(device).attach()
    synth = synthesizers.build(cfg.method, teacher, space, cfg, device, generator, student_hidden=student.config.hidden_size)
    batches = [synth.craft(min(cfg.batch_size, n - start), student) for start in range(0, n, cfg.batch_size)]
    batch = PseudoBatch.concat(batches)
    id2label = {int(k): v for k, v in teacher.config.id2label.items()}
    probs = batch.teacher_logits.float().softmax(-1).cpu()
    conf, pred = probs.max(-1)
    texts = decode(space, tokenizer, batch.embeds, batch.slot)
    lines = [f"{id2label[int(p)]}\t{c:.3f}\t{t}" for p, c, t in zip(pred, conf, texts, strict=True)]
    (output / "pseudo_samples.txt").write_text("teacher_label\tconfidence\tnearest word pieces\n" + "\n".join(lines) + "\n")

    labels = [id2label[i] for i in range(len(id2label))]
    during = report.get("synthesis", {}).get("teacher_class_histogram", {})
    fresh = torch.bincount(pred, minlength=len(labels)).tolist()
    fig, ax = plt.subplots(figsize=(max(5, len(labels) * 1.2), 3.5))
    xs = torch.arange(len(labels)).float()
    if during:
        total = sum(during.values()) or 1
        ax.bar(xs - 0.2, [during.get(lab, 0) / total for lab in labels], width=0.4, label=f"during the run ({total})")
    ax.bar(xs + 0.2, [c / n for c in fresh], width=0.4, label=f"fresh ({n})")
    ax.set_xticks(xs.tolist(), labels, rotation=30, ha="right")
    ax.set_ylabel("share of pseudo samples")
    ax.set_title("teacher's label of pseudo samples")
    ax.legend()
    fig.tight_layout()
    fig.savefig(output / "class_histogram.png", dpi=120)
    plt.close(fig)

    feats = [cls_features(teacher, batch.embeds, batch.attention_mask, cfg.precision)]
    real_pred = None
    if data is not None:
        enc = tokenizer(data.texts[:n], truncation=True, max_length=data.max_length, padding=True, return_tensors="pt").to(device)
        with torch.inference_mode():
            embeds = teacher.get_input_embeddings()(enc["input_ids"])
            real_pred = teacher(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits.argmax(-1).cpu()
        feats.append(cls_features(teacher, embeds, enc["attention_mask"], cfg.precision))
    xy = pca_2d(torch.cat(feats))
    fig, ax = plt.subplots(figsize=(6, 5))
    cmap = plt.get_cmap("tab10")
    k = len(feats[0])
    for c in range(len(labels)):
        m = pred == c
        ax.scatter(xy[:k][m, 0], xy[:k][m, 1], s=12, marker="x", color=cmap(c % 10), label=f"pseudo: {labels[c]}")
        if real_pred is not None:
            m = real_pred == c
            ax.scatter(xy[k:][m, 0], xy[k:][m, 1], s=10, marker="o", facecolors="none", edgecolors=cmap(c % 10), label=f"real: {labels[c]}")
    ax.set_title("teacher [CLS] features, PCA" + (" (x pseudo, o real)" if real_pred is not None else ""))
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(output / "features.png", dpi=120)
    plt.close(fig)
    return {"samples": n, "examples": lines[:10], "real_texts": 0 if data is None else min(n, len(data.texts))}
