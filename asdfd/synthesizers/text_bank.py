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
        self.pad_id = space.pad_id

    def __len__(self) -> int:
        return len(self.ids)

    def draw(self, n: int, generator: torch.Generator, width: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``frame`` of ``n`` rows drawn uniformly (with replacement), padded to ``width``."""
        return self.frame(torch.randint(len(self), (n,), generator=generator), width)

    def frame(self, idx: torch.Tensor, width: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Ids, attention mask and slot (the text's own word pieces: not [CLS], [SEP] or padding) of
        rows ``idx``, cut to the longest of them, or padded to ``width`` (at least as long as every
        text) where batches must share one shape (the replay pool)."""
        width = int(self.lengths[idx].max()) if width is None else width
        ids = self.ids[idx, :width]
        if ids.shape[1] < width:
            ids = torch.nn.functional.pad(ids, (0, width - ids.shape[1]), value=self.pad_id)
        attn = (torch.arange(width)[None, :] < self.lengths[idx, None]).long()
        return ids, attn, attn.bool() & ~torch.isin(ids, self.special)
