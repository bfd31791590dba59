"""``as-dfd``: Plug & Play Embedding Guessing plus adversarial self-supervision.

Stage 1 (guessing): each pseudo sample starts at the embeddings of random word pieces (of
``init_candidates`` random starts, the one the teacher is least sure about) and its pseudo tokens
``z`` take ``guess_steps`` Adam steps through the frozen teacher toward a target class (balanced
over the batch): ``min_z CE(T(x), y) + lambda_norm * R(z)``.
Stage 2 (adversarial): ``adv_steps`` more steps that also raise the student's self-supervised
loss: ``min_z CE(T(x), y) + lambda_norm * R(z) - lambda_adv * L_ss(S, x)``. The student and the
pretext head lower ``L_ss`` (with the KD terms) in their own step (``student_loss``), so the two
play against each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from ..errors import UserError
from ..selfsup import TASKS, build_task
from .base import PseudoBatch, Synthesizer


@dataclass
class Crafting:
    """A batch of pseudo tokens being optimised: ``z`` (B, max_len, d) and its frame."""

    z: torch.Tensor
    opt: torch.optim.Optimizer
    base: torch.Tensor
    slot: torch.Tensor
    attn: torch.Tensor
    targets: torch.Tensor


class ASDFD(Synthesizer):
    """Plug & Play Embedding Guessing + adversarial self-supervision (the paper's method)."""

    name = "as-dfd"
    default_mix = 0.5  # chosen on the validation splits (docs/RESULTS.md)

    @classmethod
    def default_replay_size(cls, cfg) -> int:
        """Only the newest crafted batch (chosen on the validation splits, docs/RESULTS.md)."""
        return cfg.batch_size

    @classmethod
    def check(cls, cfg) -> None:
        cls.require(cfg, 0, "guess_steps", "adv_steps")
        cls.require(cfg, 1, "init_candidates")
        if cfg.ss_task not in (*TASKS, "none"):
            raise UserError(f"unknown ss_task '{cfg.ss_task}'; choose {', '.join(TASKS)} or none")
        if not 0.0 < cfg.ss_ratio < 1.0:
            raise UserError(f"ss_ratio must be in (0, 1), got {cfg.ss_ratio}")
        for name in ("lambda_adv", "lambda_norm"):
            if getattr(cfg, name) < 0:
                raise UserError(f"{name} must be >= 0, got {getattr(cfg, name)}")

    def __init__(self, teacher, space, cfg, device, generator, **kw):
        super().__init__(teacher, space, cfg, device, generator, **kw)
        self.task = build_task(cfg.ss_task, self.student_hidden, space, cfg.ss_ratio)
        if self.task is not None:
            self.task.to(device)
        # the adversarial steps raise the pretext loss only when there is one and it has weight
        self.ss_adversary = self.task is not None and cfg.lambda_adv > 0
        self.norm_lo, self.norm_hi = space.norm_range()

    def parameters(self) -> list[torch.nn.Parameter]:
        return list(self.task.parameters()) if self.task is not None else []

    def modules(self) -> dict:
        return {"task": self.task} if self.task is not None else {}

    def student_loss(self, student: PreTrainedModel, batch: PseudoBatch) -> torch.Tensor | None:
        """The pretext loss on a quarter of the batch (samples are in random order): the head and the
        student need far fewer examples for it than the KD terms, and it costs a full student pass."""
        if self.task is None or self.cfg.lambda_ss == 0:
            return None
        sub = batch.index(torch.arange(min(len(batch), max(4, len(batch) // 4))))
        return self.cfg.lambda_ss * self.task.loss(student, sub.embeds, sub.slot, sub.attention_mask, self.generator)

    def craft(self, n: int, student: PreTrainedModel) -> PseudoBatch:
        cfg = self.cfg
        c = self.start(n)
        n_adv = cfg.adv_steps if self.ss_adversary else 0
        was_training = student.training
        student.eval()
        for k in range(cfg.guess_steps + n_adv):
            self.step(c, student, adversarial=k >= cfg.guess_steps)
        student.train(was_training)
        with torch.inference_mode():
            x = self.space.compose(c.z.detach(), c.base, c.slot)
            logits, hidden = self.teacher_outputs(x, c.attn)
        # clones: out of inference mode, into tensors a student step may use as targets
        return PseudoBatch(x.clone(), c.attn, c.slot, c.targets, logits.clone(), None if hidden is None else hidden.clone())

    def start(self, n: int) -> Crafting:
        """Stage 0: for balanced targets in random order, random word-piece embeddings (of
        ``init_candidates`` random starts per sample, the one ``best_starts`` keeps)."""
        candidates = self.random_frame(n * self.cfg.init_candidates)
        targets = (torch.randperm(n, generator=self.generator) % self.num_labels).to(self.device)
        ids, base, slot, attn = self.best_starts(candidates, targets)
        z = self.token_embeddings(ids).detach().requires_grad_(True)
        return Crafting(z, torch.optim.Adam([z], lr=self.cfg.guess_lr), base, slot, attn, targets)

    @torch.no_grad()  # not inference_mode: the picked frames go on into the guessing steps' graph
    def best_starts(self, candidates: tuple[torch.Tensor, ...], targets: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One random frame (ids, base, slot, attn) per target, from ``k`` candidates per sample (rows
        ``i*k .. i*k+k-1``): the one with the highest teacher entropy. Every class then starts from
        where the teacher hesitates, so no class is reached by a much longer move than the others
        (random text leans to some classes)."""
        n = len(targets)
        k = candidates[0].shape[0] // n
        if k == 1:
            return candidates
        ids, base, slot, attn = candidates
        probs = self.teacher_logits(self.space.compose(self.token_embeddings(ids), base, slot), attn).softmax(-1).view(n, k, -1)
        entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1)
        pick = torch.arange(n, device=self.device) * k + entropy.argmax(1)
        return tuple(t[pick].clone() for t in candidates)

    def norm_penalty(self, z: torch.Tensor, slot_z: torch.Tensor) -> torch.Tensor:
        """Squared distance of each token vector's norm outside the real embeddings' norm range."""
        norms = z.norm(dim=-1)
        out = F.relu(norms - self.norm_hi) ** 2 + F.relu(self.norm_lo - norms) ** 2
        return (out * slot_z).sum() / slot_z.sum().clamp_min(1) / self.norm_hi**2

    def step(self, c: Crafting, student: PreTrainedModel, adversarial: bool) -> None:
        """One Adam step on ``z``: guessing, plus the adversarial term when asked."""
        cfg = self.cfg
        x = self.space.compose(c.z, c.base, c.slot)
        logits = self.teacher_logits(x, c.attn)
        ce = F.cross_entropy(logits, c.targets, reduction="none")
        with torch.no_grad():  # a sample the teacher already gives its target with probability 1 (in float) stays put
            p_target = logits.softmax(-1).gather(1, c.targets[:, None]).squeeze(1)
            active = (p_target < 1.0).float()
        slot_z = c.slot[:, 1 : cfg.max_len + 1].float()
        loss = (ce * active).mean() + cfg.lambda_norm * self.norm_penalty(c.z, slot_z)
        if adversarial and self.ss_adversary:
            with self.autocast():
                loss = loss - cfg.lambda_adv * self.task.loss(student, x, c.slot, c.attn, self.generator)
        (grad,) = torch.autograd.grad(loss, [c.z])
        c.z.grad = grad * active[:, None, None]
        c.opt.step()
