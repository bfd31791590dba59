"""The one protocol every way of making pseudo samples implements.

A synthesizer owns its state (replay pool, self-supervised head, statistics) and its options'
checks. The distiller asks it to ``synthesize(student)`` a fresh batch now and then (adapted to
the student as it is at that moment), draws training batches with ``sample(n)``, adds
``student_loss`` to the student's objective and optimises ``parameters()`` together with the
student. A new method is one subclass that implements ``craft`` (and ``check`` for its options),
registered by name in ``asdfd.synthesizers``.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from .. import bucketing
from ..config import DistillConfig
from ..errors import UserError
from ..models import TokenSpace
from ..runtime import autocast
from .batch import PseudoBatch
from .pool import ReplayPool, student_batch


class Synthesizer:
    """Base class: subclasses implement ``craft``; everything else is shared."""

    name = "base"
    needs_data = False  # True only for the data-driven references (real-kd, finetune)
    reads_general_text = False  # True: the run reads real general-domain text, not task data (general-text)
    hard_labels = False  # True: the student learns the batch's ``targets`` (gold labels), not the teacher
    default_mix = 0.0  # share of each student batch made of token-level mixtures unless cfg.mix says otherwise
    balanced_draws = False  # True: student batches drawn alike from each of the teacher's classes (samples that lean to a few)

    @classmethod
    def default_replay_size(cls, cfg: DistillConfig) -> int:
        """Pool capacity unless ``cfg.replay_size`` says otherwise."""
        return 4096

    @classmethod
    def fill_defaults(cls, cfg: DistillConfig) -> None:
        """Set the options whose default is this method's own (left None by the user)."""
        if cfg.replay_size is None:
            cfg.replay_size = cls.default_replay_size(cfg)
        if cfg.mix is None:
            cfg.mix = cls.default_mix

    @classmethod
    def check(cls, cfg: DistillConfig) -> None:
        """Refuse option values this method cannot run with (one-line ``UserError``s)."""

    @staticmethod
    def require(cfg: DistillConfig, at_least: int, *names: str) -> None:
        """Each option in ``names`` must be an integer >= ``at_least``."""
        for name in names:
            if getattr(cfg, name) < at_least:
                raise UserError(f"{name} must be >= {at_least}, got {getattr(cfg, name)}")

    def __init__(
        self,
        teacher: PreTrainedModel,
        space: TokenSpace,
        cfg: DistillConfig,
        device: torch.device,
        generator: torch.Generator,
        student_hidden: int | None = None,
    ):
        """``student_hidden``: the student's hidden size, for heads on its states (the teacher's unless given)."""
        self.teacher = teacher
        self.student_hidden = int(student_hidden or teacher.config.hidden_size)
        self.space = space
        self.cfg = cfg
        self.device = device
        self.generator = generator
        self.num_labels = int(teacher.config.num_labels)
        self.pool = ReplayPool(cfg.replay_size, generator, self.balanced_draws)
        self.class_hist = torch.zeros(self.num_labels, dtype=torch.long)
        self.confidence_sum = 0.0
        self.target_prob_sum = 0.0
        self.n_targeted = 0
        self.n_crafted = 0  # samples asked for (the pseudo-sample budget)
        self.n_pooled = 0  # samples that entered the pool
        # the teacher hidden-state indices the student learns from, kept with crafted samples (set by the distiller)
        self.keep_hidden: list[int] | None = None

    # ---- to implement
    def craft(self, n: int, student: PreTrainedModel) -> PseudoBatch:
        """``n`` fresh samples with their teacher logits (used for training and the held-out check)."""
        raise NotImplementedError

    # ---- shared protocol
    def synthesize(self, student: PreTrainedModel) -> PseudoBatch | None:
        """Craft one batch of ``cfg.batch_size`` fresh samples, record it and add it to the pool."""
        batch = self.craft(self.cfg.batch_size, student)
        self.n_crafted += self.cfg.batch_size
        self._record(batch)
        self.pool.add(batch)
        return batch

    def sample(self, n: int) -> PseudoBatch:
        """A training batch from the pool (with the method's share of mixtures)."""
        return student_batch(self.pool, n, self.cfg.mix, self.device)

    def student_loss(self, student: PreTrainedModel, batch: PseudoBatch) -> torch.Tensor | None:
        """Extra loss for the student (e.g. a self-supervised task); None when there is none."""
        return None

    def parameters(self) -> list[torch.nn.Parameter]:
        """Parameters trained together with the student (e.g. a self-supervised head)."""
        return []

    def modules(self) -> dict:
        """Named objects with their own ``state_dict`` (heads, generators, their optimisers)."""
        return {}

    # ---- checkpointing: everything that changes as the run goes (the random generator is the run's)
    COUNTERS = ("confidence_sum", "target_prob_sum", "n_targeted", "n_crafted", "n_pooled")

    def state_dict(self) -> dict:
        """What a resumed run needs; subclasses with more moving parts extend it."""
        return {
            "pool": self.pool.state_dict(),
            "class_hist": self.class_hist.clone(),
            "counters": {k: copy.copy(getattr(self, k)) for k in self.COUNTERS},
            "modules": {name: m.state_dict() for name, m in self.modules().items()},
        }

    def load_state_dict(self, state: dict) -> None:
        self.pool.load_state_dict(state["pool"])
        self.class_hist = state["class_hist"].clone()
        for k, v in state["counters"].items():
            setattr(self, k, v)
        for name, m in self.modules().items():
            m.load_state_dict(state["modules"][name])

    def stats(self) -> dict:
        n = max(self.n_pooled, 1)
        id2label = self.teacher.config.id2label
        return {
            "pseudo_samples": self.n_crafted,
            "pooled_samples": self.n_pooled,
            "teacher_class_histogram": {id2label[i]: int(c) for i, c in enumerate(self.class_hist.tolist())},
            "teacher_mean_max_prob": self.confidence_sum / n,
            "teacher_mean_target_prob": (self.target_prob_sum / self.n_targeted) if self.n_targeted else None,
        }

    # ---- helpers for subclasses
    def random_frame(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Random lengths and uniformly random ordinary word-piece ids; (ids, base, slot, attn) on device."""
        cfg = self.cfg
        lengths = torch.randint(cfg.min_len, cfg.max_len + 1, (n,), generator=self.generator)
        base, slot, attn = self.space.frame(lengths, cfg.max_len)
        ordinary = self.space.ordinary
        ids = ordinary[torch.randint(len(ordinary), (n, cfg.max_len), generator=self.generator)]
        return ids.to(self.device), base.to(self.device), slot.to(self.device), attn.to(self.device)

    def token_embeddings(self, ids: torch.Tensor) -> torch.Tensor:
        """Word-piece vectors of ``ids`` (on any device) on device: the one place where ids meet the
        embedding table, which stays on the CPU."""
        table = self.space.embeddings
        return table[ids.to(table.device)].to(self.device)

    def autocast(self):
        """The run's mixed-precision context for forward passes (a no-op at fp32)."""
        return autocast(self.device, self.cfg.precision)

    @property
    def frame_width(self) -> int:
        """Positions of a pseudo sample in the pool: ``[CLS]``, ``max_len`` slots, ``[SEP]``."""
        return self.cfg.max_len + 2

    def labelled(self, embeds: torch.Tensor, attn: torch.Tensor, slot: torch.Tensor, targets: torch.Tensor | None = None) -> PseudoBatch:
        """Samples on device with the teacher's logits; ``targets`` -1 (aimed at no class) unless given."""
        if targets is None:
            targets = torch.full((len(embeds),), -1, dtype=torch.long, device=self.device)
        return PseudoBatch(embeds, attn, slot, targets, self.teacher_logits(embeds, attn))

    def teacher_logits(self, embeds: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            return bucketing.forward(self.teacher, embeds, attn).logits.float()

    def teacher_outputs(self, embeds: torch.Tensor, attn: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The teacher's logits, and its hidden states at ``keep_hidden`` stacked (B, K, T, d) when set: what
        a student step then need not compute again for these samples."""
        if self.keep_hidden is None:
            return self.teacher_logits(embeds, attn), None
        with self.autocast():
            out = bucketing.forward(self.teacher, embeds, attn, output_hidden_states=True)
        return out.logits.float(), torch.stack([out.hidden_states[i] for i in self.keep_hidden], 1)

    def _record(self, batch: PseudoBatch) -> None:
        probs = F.softmax(batch.teacher_logits.float(), dim=-1).cpu()
        self.class_hist += torch.bincount(probs.argmax(-1), minlength=self.num_labels)
        self.confidence_sum += float(probs.max(-1).values.sum())
        targeted = batch.targets.cpu() >= 0
        if targeted.any():
            t = batch.targets.cpu()[targeted]
            self.target_prob_sum += float(probs[targeted].gather(1, t[:, None]).sum())
            self.n_targeted += int(targeted.sum())
        self.n_pooled += len(batch)
