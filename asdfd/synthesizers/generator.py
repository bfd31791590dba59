"""A small generator of pseudo-token embeddings, shared by the generator baselines (ZSKT, DAFL).

Those methods come from image data-free KD, where a generator maps noise to images. Here it maps
noise to a sequence of token vectors, standardised per token and scaled to the statistics of the
teacher's real word embeddings, then framed as ``[CLS] z_1..z_L [SEP]`` like every pseudo sample.
A subclass defines ``generator_loss``; each crafted batch costs ``generator_steps`` updates.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

from .base import PseudoBatch, Synthesizer


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
    """Base for generator baselines: noise -> generator -> pseudo tokens; subclasses give the loss."""

    noise_dim = 64

    def __init__(self, teacher, space, cfg, device, generator):
        super().__init__(teacher, space, cfg, device, generator)
        E = space.embeddings[space.ordinary]
        self.net = EmbeddingGenerator(self.noise_dim, cfg.max_len, E.shape[1], E.mean(0), float(E.std())).to(device)
        self.net_opt = torch.optim.Adam(self.net.parameters(), lr=cfg.generator_lr, betas=(0.5, 0.999))
        self.last_generator_loss = float("nan")

    def generator_loss(self, x: torch.Tensor, attn: torch.Tensor, student: PreTrainedModel) -> torch.Tensor:
        raise NotImplementedError

    def modules(self) -> dict:
        return {"net": self.net, "net_opt": self.net_opt}

    def _generate(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        _, base, slot, attn = self.random_frame(n)
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
