"""``modified-zskt``: Zero-Shot KT (Micaelli & Storkey, 2019) moved from pixels to token embeddings.

A generator of pseudo-token embeddings is trained to *maximise* the teacher-student divergence
``KL(T(x) || S(x))``, while the student minimises it in the shared distillation loop (whose
hidden-state term plays the part of ZSKT's attention transfer).
"""

from __future__ import annotations

import torch

from ..losses import kd_loss
from .generator import GeneratorSynthesizer


class ModifiedZSKT(GeneratorSynthesizer):
    """Generator trained adversarially to maximise teacher-student KL (baseline)."""

    name = "modified-zskt"

    def generator_loss(self, x, attn, student) -> torch.Tensor:
        t = self.teacher(inputs_embeds=x, attention_mask=attn).logits
        s = student(inputs_embeds=x, attention_mask=attn).logits
        return -kd_loss(s, t, 1.0)
