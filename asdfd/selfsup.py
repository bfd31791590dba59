"""Self-supervised pretext tasks on pseudo embeddings: how well does the student read them?

A task corrupts a batch of pseudo embeddings and asks a small head on the student's last hidden
states to find the corruption. The loss is differentiable in the embeddings (the adversarial step
raises it) and in the student and head (the student step lowers it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

from . import bucketing
from .models import TokenSpace


def last_hidden(student: PreTrainedModel, embeds: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
    return bucketing.forward(student.base_model, embeds, attn).last_hidden_state


class ReplacedTokenDetection(nn.Module):
    """Replace a fraction of pseudo tokens with uniformly random real word pieces; find them (per token)."""

    def __init__(self, hidden: int, space: TokenSpace, ratio: float):
        super().__init__()
        self.head = nn.Linear(hidden, 1)
        self.space = space
        self.ratio = ratio

    def loss(self, student, embeds, slot, attn, generator: torch.Generator) -> torch.Tensor:
        B, T, _ = embeds.shape
        replaced = (torch.rand(B, T, generator=generator) < self.ratio).to(embeds.device) & slot
        ordinary = self.space.ordinary
        ids = ordinary[torch.randint(len(ordinary), (B, T), generator=generator)]
        corrupt = torch.where(replaced.unsqueeze(-1), self.space.embeddings[ids].to(embeds), embeds)
        logits = self.head(last_hidden(student, corrupt, attn)).squeeze(-1).float()
        return F.binary_cross_entropy_with_logits(logits[slot], replaced[slot].float())


TASKS = {"replaced": ReplacedTokenDetection}


def build_task(name: str, hidden: int, space: TokenSpace, ratio: float) -> nn.Module | None:
    """The pretext task ``name`` (None for "none")."""
    return None if name == "none" else TASKS[name](hidden, space, ratio)
