"""Real texts tokenised once, for the methods that read text (``real-kd``, ``finetune``, ``general-text``)."""

from __future__ import annotations

import torch

from ..models import TokenSpace


class TextBank:
    """Texts as padded word-piece ids; ``frame(idx)`` gives a batch of them as (ids, attn, slot)."""

    def __init__(self, space: TokenSpace, texts: list[str], max_length: int):
        tokenizer = space.tokenizer
        ids = tokenizer(texts, truncation=True, max_length=min(max_length, space.max_positions))["input_ids"]
        self.lengths = torch.tensor([len(i) for i in ids])
        self.ids = torch.full((len(ids), int(self.lengths.max())), space.pad_id, dtype=torch.long)
        for row, seq in enumerate(ids):
            self.ids[row, : len(seq)] = torch.tensor(seq)
        self.special = torch.tensor(sorted(set(tokenizer.all_special_ids)))

    def __len__(self) -> int:
        return len(self.ids)

    def frame(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Ids, attention mask and slot (the text's own word pieces: not [CLS], [SEP] or padding) of
        rows ``idx``, cut to the longest of them."""
        width = int(self.lengths[idx].max())
        ids = self.ids[idx, :width]
        attn = (torch.arange(width)[None, :] < self.lengths[idx, None]).long()
        return ids, attn, attn.bool() & ~torch.isin(ids, self.special)
