"""The one protocol every way of making pseudo samples implements, and the replay pool they share.

A synthesizer owns its state (pool, self-supervised head, statistics). The distiller asks it to
``synthesize(student)`` a fresh batch now and then (adapted to the student as it is at that moment),
draws training batches with ``sample(n)``, adds ``student_loss`` to the student's objective and
optimises ``parameters()`` together with the student. A new method is one subclass that implements
``craft`` and is registered in ``asdfd.synthesizers``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from ..config import DistillConfig
from ..models import TokenSpace


@dataclass
class PseudoBatch:
    """Pseudo samples in embedding space, framed as ``[CLS] z_1..z_L [SEP] pad..``."""

    embeds: torch.Tensor  # (B, T, d) what goes into inputs_embeds
    attention_mask: torch.Tensor  # (B, T)
    slot: torch.Tensor  # (B, T) bool: positions holding pseudo tokens (not CLS/SEP/pad)
    targets: torch.Tensor  # (B,) class the sample was crafted toward, -1 if none
    teacher_logits: torch.Tensor  # (B, C) teacher logits on the final samples

    def __len__(self) -> int:
        return self.embeds.shape[0]

    def to(self, device: torch.device) -> PseudoBatch:
        return PseudoBatch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def index(self, idx: torch.Tensor) -> PseudoBatch:
        return PseudoBatch(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})


class ReplayPool:
    """A bounded FIFO of crafted samples on the CPU; ``sample`` draws uniformly from what it holds."""

    def __init__(self, capacity: int, generator: torch.Generator):
        self.capacity = capacity
        self.generator = generator
        self.store: PseudoBatch | None = None
        self.size = 0
        self.cursor = 0

    def add(self, batch: PseudoBatch) -> None:
        batch = batch.to(torch.device("cpu"))
        if self.store is None:
            self.store = PseudoBatch(
                **{f.name: getattr(batch, f.name).new_zeros((self.capacity, *getattr(batch, f.name).shape[1:])) for f in fields(batch)}
            )
        n = len(batch)
        assert n <= self.capacity, "a batch larger than the replay pool"
        idx = (self.cursor + torch.arange(n)) % self.capacity
        for f in fields(batch):
            getattr(self.store, f.name)[idx] = getattr(batch, f.name)
        self.cursor = int((self.cursor + n) % self.capacity)
        self.size = min(self.capacity, self.size + n)

    def sample(self, n: int) -> PseudoBatch:
        assert self.store is not None and self.size > 0, "sample() before any synthesize()"
        idx = torch.randint(self.size, (n,), generator=self.generator)
        return self.store.index(idx)


class Synthesizer:
    """Base class: subclasses implement ``craft``; everything else is shared."""

    name = "base"

    def __init__(
        self,
        teacher: PreTrainedModel,
        space: TokenSpace,
        cfg: DistillConfig,
        device: torch.device,
        generator: torch.Generator,
    ):
        self.teacher = teacher
        self.space = space
        self.cfg = cfg
        self.device = device
        self.generator = generator
        self.num_labels = int(teacher.config.num_labels)
        self.pool = ReplayPool(cfg.replay_size, generator)
        self.class_hist = torch.zeros(self.num_labels, dtype=torch.long)
        self.confidence_sum = 0.0
        self.target_prob_sum = 0.0
        self.n_targeted = 0
        self.n_crafted = 0

    # ---- to implement
    def craft(self, n: int, student: PreTrainedModel) -> PseudoBatch:
        raise NotImplementedError

    # ---- shared protocol
    def synthesize(self, student: PreTrainedModel) -> PseudoBatch:
        """Craft one batch of ``cfg.batch_size`` fresh samples, record it and add it to the pool."""
        batch = self.craft(self.cfg.batch_size, student)
        self._record(batch)
        self.pool.add(batch)
        return batch

    def sample(self, n: int) -> PseudoBatch:
        return self.pool.sample(n).to(self.device)

    def student_loss(self, student: PreTrainedModel, batch: PseudoBatch) -> torch.Tensor | None:
        """Extra loss for the student (e.g. a self-supervised task); None when there is none."""
        return None

    def parameters(self) -> list[torch.nn.Parameter]:
        """Parameters trained together with the student (e.g. a self-supervised head)."""
        return []

    def stats(self) -> dict:
        n = max(self.n_crafted, 1)
        id2label = self.teacher.config.id2label
        return {
            "pseudo_samples": self.n_crafted,
            "teacher_class_histogram": {id2label[i]: int(c) for i, c in enumerate(self.class_hist.tolist())},
            "teacher_mean_max_prob": self.confidence_sum / n,
            "teacher_mean_target_prob": (self.target_prob_sum / self.n_targeted) if self.n_targeted else None,
        }

    # ---- helpers for subclasses
    def random_frame(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Random lengths and random ordinary token ids; returns (ids, base, slot, attn) on device."""
        cfg = self.cfg
        lengths = torch.randint(cfg.min_len, cfg.max_len + 1, (n,), generator=self.generator)
        base, slot, attn = self.space.frame(lengths, cfg.max_len)
        ordinary = self.space.ordinary
        ids = ordinary[torch.randint(len(ordinary), (n, cfg.max_len), generator=self.generator)]
        return ids, base.to(self.device), slot.to(self.device), attn.to(self.device)

    def token_embeddings(self, ids: torch.Tensor) -> torch.Tensor:
        return self.space.embeddings[ids].to(self.device)

    def teacher_logits(self, embeds: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        return self.teacher(inputs_embeds=embeds, attention_mask=attn).logits

    def _record(self, batch: PseudoBatch) -> None:
        probs = F.softmax(batch.teacher_logits.float(), dim=-1).cpu()
        self.class_hist += torch.bincount(probs.argmax(-1), minlength=self.num_labels)
        self.confidence_sum += float(probs.max(-1).values.sum())
        targeted = batch.targets.cpu() >= 0
        if targeted.any():
            t = batch.targets.cpu()[targeted]
            self.target_prob_sum += float(probs[targeted].gather(1, t[:, None]).sum())
            self.n_targeted += int(targeted.sum())
        self.n_crafted += len(batch)
