"""``general-text``: everyday English from a packaged corpus, labelled by the teacher.

Not data-free in the strict sense and not a baseline of the paper: it reads real text, though not
the task's (lines of film dialogue, ``asdfd.data.general_corpus``). It is the "no training data"
mode, for users who may use general text but have none of the task's; set beside ``random-text``
it measures what real sentence structure, without task data, is worth to the student. Same
budget as every method: ``pseudo_samples`` texts through the same replay pool, cut to ``max_len``
word pieces like the pseudo samples.
"""

from __future__ import annotations

import torch
from transformers import PreTrainedModel

from ..data import general_corpus
from .base import PseudoBatch, Synthesizer
from .text_bank import TextBank


class GeneralText(Synthesizer):
    """Random lines of a general-domain corpus, labelled by the teacher (reads text, not task data)."""

    name = "general-text"
    reads_general_text = True

    def __init__(self, teacher, space, cfg, device, generator, **kw):
        super().__init__(teacher, space, cfg, device, generator, **kw)
        self.bank = TextBank(space, general_corpus(), self.frame_width)

    @torch.inference_mode()
    def craft(self, n: int, student: PreTrainedModel) -> PseudoBatch:
        ids, attn, slot = self.bank.draw(n, self.generator, self.frame_width)
        return self.labelled(self.token_embeddings(ids), attn.to(self.device), slot.to(self.device))

    def stats(self) -> dict:
        return {**super().stats(), "general_texts": len(self.bank)}
