"""The replay pool crafted samples wait in, and how a student batch is drawn from it.

A student batch is ``n`` draws from the pool (uniform, or alike from each of the teacher's
classes where the method's samples lean to a few), of which the first ``round(mix * n)`` are
replaced by token-level mixtures of two pool samples. Mixtures carry no teacher logits: the
distiller labels the whole batch in the one teacher pass it makes anyway (for the hidden states),
so a mixture's label falls wherever the teacher puts it, often between its parents' classes.
"""

from __future__ import annotations

from dataclasses import fields

import torch

from .batch import PseudoBatch


class ReplayPool:
    """A bounded FIFO of crafted samples on the CPU; ``sample`` draws from what it holds, uniformly or
    (``balanced``) weighted by one over the count of each sample's teacher class (its argmax), so
    that every class the pool holds comes alike."""

    def __init__(self, capacity: int, generator: torch.Generator, balanced: bool = False):
        self.capacity = capacity
        self.balanced = balanced
        self.generator = generator
        self.store: PseudoBatch | None = None
        self.size = 0
        self.cursor = 0

    def add(self, batch: PseudoBatch) -> None:
        assert batch.teacher_logits is not None, "pooled samples carry their teacher logits"
        batch = batch.to(torch.device("cpu"))
        if self.store is None:
            self.store = batch._map(lambda t: t.new_zeros((self.capacity, *t.shape[1:])))
        if len(batch) > self.capacity:  # only the newest samples fit
            batch = batch.index(torch.arange(len(batch) - self.capacity, len(batch)))
        n = len(batch)
        idx = (self.cursor + torch.arange(n)) % self.capacity
        for f in fields(batch):
            new, old = getattr(batch, f.name), getattr(self.store, f.name)
            if new is None or old is None:  # what not every sample has is dropped (a checkpoint from before states were kept)
                setattr(self.store, f.name, None)
            else:
                old[idx] = new
        self.cursor = int((self.cursor + n) % self.capacity)
        self.size = min(self.capacity, self.size + n)

    def sample(self, n: int) -> PseudoBatch:
        assert self.store is not None and self.size > 0, "sample() before any synthesize()"
        if not self.balanced:
            return self.store.index(torch.randint(self.size, (n,), generator=self.generator))
        classes = self.store.teacher_logits[: self.size].argmax(-1)
        weights = 1.0 / torch.bincount(classes)[classes]
        return self.store.index(torch.multinomial(weights, n, replacement=True, generator=self.generator))

    def state_dict(self) -> dict:
        kept = None if self.store is None else self.store.rows(0, self.size)  # a copy
        store = None if kept is None else {f.name: getattr(kept, f.name) for f in fields(kept)}
        return {"store": store, "size": self.size, "cursor": self.cursor}

    def load_state_dict(self, state: dict) -> None:
        self.store, self.size, self.cursor = None, 0, 0
        if state["store"] is not None:
            self.add(PseudoBatch(**state["store"]))
        self.size, self.cursor = state["size"], state["cursor"]


@torch.no_grad()  # not inference_mode: the student trains on these tensors
def token_mixtures(a: PseudoBatch, b: PseudoBatch, generator: torch.Generator) -> PseudoBatch:
    """Mixtures of ``a`` and ``b`` (pool samples, which share the pool's frame width): each pseudo
    token of ``a`` is swapped for ``b``'s at the same position with probability ``lam ~ U(0, 1)``
    (one ``lam`` per mixture), where both have one. The mixtures keep ``a``'s frame and carry no
    teacher logits."""
    device = a.embeds.device
    lam = torch.rand(len(a), 1, generator=generator).to(device)
    take = torch.rand(a.slot.shape, generator=generator).to(device) < lam
    take &= a.slot & b.slot
    embeds = a.embeds.clone()
    embeds[take] = b.embeds[take]
    return PseudoBatch(embeds, a.attention_mask, a.slot, torch.full_like(a.targets, -1), None)


def student_batch(pool: ReplayPool, n: int, mix: float, device: torch.device) -> PseudoBatch:
    """``n`` pool samples on ``device``, the first ``round(mix * n)`` of them mixed with other pool draws."""
    batch = pool.sample(n).to(device)
    n_mix = round(mix * n)
    if n_mix == 0:
        return batch
    mixed = token_mixtures(batch.rows(0, n_mix), pool.sample(n_mix).to(device), pool.generator)
    return PseudoBatch.concat([mixed, batch.rows(n_mix, n - n_mix)])
