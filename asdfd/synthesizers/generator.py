"""``modified-zskt`` and ``modified-dafl``: one generator of pseudo-token embeddings, two sets of loss weights.

Both come from image data-free KD, where a generator maps noise to images. Here it maps noise to a
sequence of token vectors, standardised per token and scaled to the statistics of the teacher's
real word embeddings, then framed as ``[CLS] z_1..z_L [SEP]`` like every pseudo sample. Each
crafted batch costs ``generator_steps`` generator updates on

    w_oh * CE(T(x), argmax T(x)) - w_act * |h_T(x)| + w_ie * sum p log p - w_adv * KL(T(x) || S(x))

- Zero-Shot KT (Micaelli & Storkey, 2019): only the adversarial term; the generator seeks where
  student and teacher disagree while the student, in the shared loop, closes the gap (whose
  hidden-state term plays the part of ZSKT's attention transfer).
- Data-Free Learning (Chen et al., 2019): one-hot (the teacher confident in its own argmax),
  activation (large teacher features; here the final [CLS] hidden state) and information entropy
  (classes balanced over the batch, ``p`` the batch-mean teacher distribution), DAFL's weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

from ..errors import UserError
from ..losses import kd_loss
from .base import PseudoBatch, Synthesizer


@dataclass(frozen=True)
class LossWeights:
    one_hot: float = 0.0
    activation: float = 0.0
    balance: float = 0.0  # information entropy of the batch-mean teacher distribution
    adversarial: float = 0.0  # teacher-student KL, raised


class EmbeddingGenerator(nn.Module):
    def __init__(self, noise_dim: int, max_len: int, dim: int, mean: torch.Tensor, std: float, hidden: int = 256):
        super().__init__()
        self.noise_dim, self.max_len, self.hidden = noise_dim, max_len, hidden
        self.fc = nn.Linear(noise_dim, max_len * hidden)
        self.token = nn.Sequential(nn.LayerNorm(hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.register_buffer("mean", mean.clone())
        self.std = std

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        h = self.fc(noise).view(-1, self.max_len, self.hidden)
        z = F.layer_norm(self.token(h), (self.mean.shape[0],))
        return self.mean + self.std * z


class GeneratorSynthesizer(Synthesizer):
    """noise -> generator -> pseudo tokens, the generator trained on ``weights``' loss terms."""

    weights = LossWeights()
    noise_dim = 64

    @classmethod
    def check(cls, cfg) -> None:
        cls.require(cfg, 0, "generator_steps")
        if cfg.generator_lr <= 0:
            raise UserError(f"generator_lr must be > 0, got {cfg.generator_lr}")

    def __init__(self, teacher, space, cfg, device, generator, **kw):
        super().__init__(teacher, space, cfg, device, generator, **kw)
        E = space.embeddings[space.ordinary]
        self.net = EmbeddingGenerator(self.noise_dim, cfg.max_len, E.shape[1], E.mean(0), float(E.std())).to(device)
        self.net_opt = torch.optim.Adam(self.net.parameters(), lr=cfg.generator_lr, betas=(0.5, 0.999))
        self.last_generator_loss = float("nan")

    def modules(self) -> dict:
        return {"net": self.net, "net_opt": self.net_opt}

    def generator_loss(self, x: torch.Tensor, attn: torch.Tensor, student: PreTrainedModel) -> torch.Tensor:
        w = self.weights
        out = self.teacher(inputs_embeds=x, attention_mask=attn, output_hidden_states=w.activation > 0)
        t = out.logits
        loss = t.new_zeros(())
        if w.one_hot:
            loss = loss + w.one_hot * F.cross_entropy(t, t.argmax(-1))
        if w.activation:
            loss = loss - w.activation * out.hidden_states[-1][:, 0].abs().mean()
        if w.balance:
            mean_p = t.softmax(-1).mean(0)
            loss = loss + w.balance * (mean_p * mean_p.clamp_min(1e-8).log()).sum()
        if w.adversarial:
            s = student(inputs_embeds=x, attention_mask=attn).logits
            loss = loss - w.adversarial * kd_loss(s, t, 1.0)
        return loss

    def _generate(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        _, base, slot, attn = self.random_frame(n)  # random lengths (the ids are not used)
        noise = torch.randn(n, self.noise_dim, generator=self.generator).to(self.device)
        return self.space.compose(self.net(noise), base, slot), slot, attn

    def craft(self, n: int, student: PreTrainedModel) -> PseudoBatch:
        was_training = student.training
        student.eval()
        for _ in range(self.cfg.generator_steps):
            with self.autocast():
                x, slot, attn = self._generate(n)
                loss = self.generator_loss(x, attn, student).float()
            grads = torch.autograd.grad(loss, list(self.net.parameters()))
            for p, g in zip(self.net.parameters(), grads, strict=True):
                p.grad = g
            self.net_opt.step()
            self.last_generator_loss = loss.item()
        student.train(was_training)
        with torch.inference_mode():
            x, slot, attn = self._generate(n)
            logits = self.teacher_logits(x, attn)
        targets = torch.full((n,), -1, dtype=torch.long, device=self.device)
        return PseudoBatch(x.clone(), attn, slot, targets, logits.clone())

    def stats(self) -> dict:
        return {**super().stats(), "final_generator_loss": self.last_generator_loss}


class ModifiedZSKT(GeneratorSynthesizer):
    """Generator trained adversarially to maximise teacher-student KL (baseline)."""

    name = "modified-zskt"
    weights = LossWeights(adversarial=1.0)


class ModifiedDAFL(GeneratorSynthesizer):
    """Generator trained on the teacher's one-hot, activation and class-balance terms (baseline)."""

    name = "modified-dafl"
    weights = LossWeights(one_hot=1.0, activation=0.1, balance=5.0)  # DAFL's weights
