"""``lm-text-noprompt`` (ablation, branch only): ``lm-text`` with no prompt at all.

The LM writes from its start token alone (no chat turn, no genre, no label name): what its
unconditioned texts teach once the teacher labels them. Pool, balanced draws and mixtures are
``lm-text``'s.
"""

from __future__ import annotations

import torch

from .lm_text import LMText


class LMTextNoPrompt(LMText):
    name = "lm-text-noprompt"

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        tok = self.writer.tokenizer
        start = tok.bos_token or tok.eos_token
        self.writer.prompt = lambda instruction: start  # the raw LM, continued from its start token

    def instructions(self, targets: torch.Tensor) -> list[str]:
        return [""] * len(targets)
