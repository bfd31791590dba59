"""``real-kd``: distil on the real training texts, labelled by the teacher (the upper bound).

Not data-free: it reads the train split of ``cfg.data``. It shares the distillation loop, the
student step budget and the losses with the data-free methods, so it bounds what they can reach.
"""

from __future__ import annotations

import torch
from transformers import PreTrainedModel

from ..data import load_dataset
from ..evaluator import label_ids
from .base import PseudoBatch, Synthesizer


class RealKD(Synthesizer):
    """Real training texts labelled by the teacher (reference upper bound, reads data)."""

    name = "real-kd"
    needs_data = True

    def __init__(self, teacher, space, cfg, device, generator):
        super().__init__(teacher, space, cfg, device, generator)
        data = load_dataset(cfg.data, "train", cfg.text_column, cfg.label_column)
        labels = torch.as_tensor(label_ids(teacher, data.labels))
        tokenizer = space.tokenizer
        limit = min(data.max_length, space.max_positions)
        ids = tokenizer(data.texts, truncation=True, max_length=limit)["input_ids"]
        self.lengths = torch.tensor([len(i) for i in ids])
        self.ids = torch.full((len(ids), int(self.lengths.max())), space.pad_id, dtype=torch.long)
        for row, seq in enumerate(ids):
            self.ids[row, : len(seq)] = torch.tensor(seq)
        self.labels = labels
        self.order = torch.empty(0, dtype=torch.long)
        self.seen = 0
        self.special = torch.tensor(sorted(set(tokenizer.all_special_ids)))

    def next_indices(self, n: int) -> torch.Tensor:
        """The next ``n`` training examples, epoch after epoch in a fresh random order."""
        while len(self.order) < n:
            self.order = torch.cat([self.order, torch.randperm(len(self.ids), generator=self.generator)])
        idx, self.order = self.order[:n], self.order[n:]
        self.seen += n
        return idx

    def craft(self, n: int, student: PreTrainedModel | None) -> PseudoBatch:
        idx = self.next_indices(n)
        width = int(self.lengths[idx].max())
        ids = self.ids[idx, :width]
        attn = (torch.arange(width)[None, :] < self.lengths[idx, None]).long()
        slot = attn.bool() & ~torch.isin(ids, self.special)
        embeds = self.token_embeddings(ids)
        attn, slot, targets = attn.to(self.device), slot.to(self.device), self.labels[idx].to(self.device)
        # no teacher pass here: the distiller labels the batch in the pass it makes anyway
        return PseudoBatch(embeds, attn, slot, targets, None)

    # real text needs no pool: every student batch is the next slice of the training set
    def synthesize(self, student: PreTrainedModel) -> None:
        return None

    def sample(self, n: int, student: PreTrainedModel | None = None) -> PseudoBatch:
        return self.craft(n, None)

    def state_dict(self) -> dict:
        return {"order": self.order.clone(), "seen": self.seen}

    def load_state_dict(self, state: dict) -> None:
        self.order, self.seen = state["order"].clone(), state["seen"]

    def stats(self) -> dict:
        return {"real_train_texts": len(self.ids), "real_samples_seen": self.seen, "epochs": self.seen / len(self.ids)}
