"""``real-kd``: distil on the real training texts, labelled by the teacher (the upper bound).

Not data-free: it reads the train split of ``cfg.data``. It shares the distillation loop, the
student step budget and the losses with the data-free methods, so it bounds what they can reach.
"""

from __future__ import annotations

import torch
from transformers import PreTrainedModel

from ..data import load_dataset
from ..errors import UserError
from ..evaluator import label_ids
from .base import PseudoBatch, Synthesizer
from .text_bank import TextBank


class RealKD(Synthesizer):
    """Real training texts labelled by the teacher (reference upper bound, reads data)."""

    name = "real-kd"
    needs_data = True

    @classmethod
    def check(cls, cfg) -> None:
        if not cfg.data:
            raise UserError(f"method '{cfg.method}' distils on real text; pass --data trec|mr|bbc or a data file")
        if cfg.mix > 0:
            raise UserError(f"method '{cfg.method}' trains on real text only; mix applies to pseudo samples, pass 0")

    def __init__(self, teacher, space, cfg, device, generator, **kw):
        super().__init__(teacher, space, cfg, device, generator, **kw)
        data = load_dataset(cfg.data, "train", cfg.text_column, cfg.label_column)
        self.labels = torch.as_tensor(label_ids(teacher, data.labels))
        self.bank = TextBank(space, data.texts, data.max_length)
        self.order = torch.empty(0, dtype=torch.long)
        self.seen = 0

    def next_indices(self, n: int) -> torch.Tensor:
        """The next ``n`` training examples, epoch after epoch in a fresh random order."""
        while len(self.order) < n:
            self.order = torch.cat([self.order, torch.randperm(len(self.bank), generator=self.generator)])
        idx, self.order = self.order[:n], self.order[n:]
        self.seen += n
        return idx

    def craft(self, n: int, student: PreTrainedModel | None) -> PseudoBatch:
        idx = self.next_indices(n)
        ids, attn, slot = self.bank.frame(idx)
        embeds = self.token_embeddings(ids)
        attn, slot, targets = attn.to(self.device), slot.to(self.device), self.labels[idx].to(self.device)
        # no teacher pass here: the distiller labels the batch in the pass it makes anyway
        return PseudoBatch(embeds, attn, slot, targets, None)

    # real text needs no pool: every student batch is the next slice of the training set
    def synthesize(self, student: PreTrainedModel) -> None:
        return None

    def sample(self, n: int) -> PseudoBatch:
        return self.craft(n, None)

    def state_dict(self) -> dict:
        return {"order": self.order.clone(), "seen": self.seen}

    def load_state_dict(self, state: dict) -> None:
        self.order, self.seen = state["order"].clone(), state["seen"]

    def stats(self) -> dict:
        return {"real_train_texts": len(self.bank), "real_samples_seen": self.seen, "epochs": self.seen / len(self.bank)}
