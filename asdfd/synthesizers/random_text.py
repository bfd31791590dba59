"""``random-text``: uniformly random word pieces, labelled by the teacher's soft outputs."""

from __future__ import annotations

import torch
from transformers import PreTrainedModel

from .base import PseudoBatch, Synthesizer


class RandomText(Synthesizer):
    """Random word pieces of random length, labelled by the teacher (baseline)."""

    name = "random-text"

    @torch.inference_mode()
    def craft(self, n: int, student: PreTrainedModel) -> PseudoBatch:
        ids, base, slot, attn = self.random_frame(n)
        embeds = self.space.compose(self.token_embeddings(ids), base, slot)
        targets = torch.full((n,), -1, dtype=torch.long, device=self.device)
        return PseudoBatch(embeds, attn, slot, targets, self.teacher_logits(embeds, attn))
