"""``real-kd``: distil on the real training texts, labelled by the teacher (the upper bound).

Not data-free: it reads the train split of ``cfg.data``. It shares the distillation loop, the
student step budget and the losses with the data-free methods, so it bounds what they can reach.
``real_text`` shuffled or unigram takes away the texts' word order, or everything but their
vocabulary: a diagnostic of which of the two the student needs from real text.
"""

from __future__ import annotations

import torch
from transformers import PreTrainedModel

from ..data import load_dataset
from ..evaluator import label_ids
from .base import PseudoBatch, Synthesizer
from .text_bank import TextBank


class RealKD(Synthesizer):
    """Real training texts labelled by the teacher (reference upper bound, reads data)."""

    name = "real-kd"
    needs_data = True

    def __init__(self, teacher, space, cfg, device, generator):
        super().__init__(teacher, space, cfg, device, generator)
        data = load_dataset(cfg.data, "train", cfg.text_column, cfg.label_column)
        self.labels = torch.as_tensor(label_ids(teacher, data.labels))
        self.bank = TextBank(space, data.texts, data.max_length)
        self.order = torch.empty(0, dtype=torch.long)
        self.seen = 0
        if cfg.real_text == "unigram":  # how often each word piece occurs in the train split's texts
            self.unigram = self.bank.counts(space.vocab_size)

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
        targets = self.labels[idx]
        if self.cfg.real_text == "shuffled":
            ids = self.shuffled(ids, slot)
        elif self.cfg.real_text == "unigram":
            ids = ids.masked_scatter(slot, torch.multinomial(self.unigram, int(slot.sum()), replacement=True, generator=self.generator))
            targets = torch.full_like(targets, -1)  # no text, so no gold label
        embeds = self.token_embeddings(ids)
        attn, slot, targets = attn.to(self.device), slot.to(self.device), targets.to(self.device)
        # no teacher pass here: the distiller labels the batch in the pass it makes anyway
        return PseudoBatch(embeds, attn, slot, targets, None)

    def shuffled(self, ids: torch.Tensor, slot: torch.Tensor) -> torch.Tensor:
        """``ids`` with each row's text word pieces (``slot``) in a random order; [CLS] stays first,
        [SEP] and padding after the text. A text's rare inner special piece ([UNK]) moves to its end."""
        pos = torch.arange(ids.shape[1]).expand_as(ids).float()
        key = torch.where(slot, 1 + torch.rand(ids.shape, generator=self.generator), torch.where(pos == 0, 0.0, 3 + pos))
        return ids.gather(1, key.argsort(1))

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
        return {"real_train_texts": len(self.bank), "real_samples_seen": self.seen, "epochs": self.seen / len(self.bank)}
