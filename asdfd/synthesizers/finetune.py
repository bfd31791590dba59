"""``finetune``: the student trained on gold labels of the real training texts, no teacher signal."""

from __future__ import annotations

from .real_kd import RealKD


class Finetune(RealKD):
    """Student fine-tuned on the gold labels of real training texts (reference, reads data)."""

    name = "finetune"
    hard_labels = True
