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
        return self.labelled(self.space.compose(self.token_embeddings(ids), base, slot), attn, slot)
