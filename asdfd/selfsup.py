"""Self-supervised pretext tasks on pseudo embeddings: how well does the student read them?

Each task corrupts a batch of pseudo embeddings and asks a small head on the student's last hidden
states to find the corruption. The loss is differentiable in the embeddings (the adversarial step
raises it) and in the student and head (the student step lowers it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

from .models import TokenSpace


def last_hidden(student: PreTrainedModel, embeds: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
    return student.base_model(inputs_embeds=embeds, attention_mask=attn).last_hidden_state


class ReplacedTokenDetection(nn.Module):
    """Replace a fraction of pseudo tokens with random real word pieces (uniform, or drawn with
    ``weights`` over the ordinary word pieces); find them (per token)."""

    def __init__(self, hidden: int, space: TokenSpace, ratio: float, weights: torch.Tensor | None = None):
        super().__init__()
        self.head = nn.Linear(hidden, 1)
        self.space = space
        self.ratio = ratio
        self.weights = weights

    def loss(self, student, embeds, slot, attn, generator: torch.Generator) -> torch.Tensor:
        B, T, _ = embeds.shape
        replaced = (torch.rand(B, T, generator=generator) < self.ratio).to(embeds.device) & slot
        ordinary = self.space.ordinary
        if self.weights is None:
            ids = ordinary[torch.randint(len(ordinary), (B, T), generator=generator)]
        else:
            ids = ordinary[torch.multinomial(self.weights, B * T, replacement=True, generator=generator).view(B, T)]
        corrupt = torch.where(replaced.unsqueeze(-1), self.space.embeddings[ids].to(embeds), embeds)
        logits = self.head(last_hidden(student, corrupt, attn)).squeeze(-1).float()
        return F.binary_cross_entropy_with_logits(logits[slot], replaced[slot].float())


class ShuffleDetection(nn.Module):
    """Shuffle the pseudo tokens of half the samples; tell shuffled from intact (from [CLS])."""

    def __init__(self, hidden: int, space: TokenSpace, ratio: float, weights: torch.Tensor | None = None):
        super().__init__()
        self.head = nn.Linear(hidden, 1)

    def loss(self, student, embeds, slot, attn, generator: torch.Generator) -> torch.Tensor:
        B, T, _ = embeds.shape
        shuffled = (torch.rand(B, generator=generator) < 0.5).to(embeds.device)
        pos = torch.arange(T, device=embeds.device).float().expand(B, T)
        length = slot.sum(1, keepdim=True).float()
        keys = torch.where(slot & shuffled[:, None], 1 + torch.rand(B, T, generator=generator).to(embeds.device) * length, pos)
        order = keys.argsort(dim=1)
        mixed = embeds.gather(1, order.unsqueeze(-1).expand_as(embeds))
        logits = self.head(last_hidden(student, mixed, attn)[:, 0]).squeeze(-1).float()
        return F.binary_cross_entropy_with_logits(logits, shuffled.float())


class RotationPrediction(nn.Module):
    """Turn every pseudo token of a sample by one of four angles (0, 90, 180 or 270 degrees) in each
    of a fixed set of 2-D planes of the embedding space; tell which (from [CLS]). The embedding-space
    counterpart of predicting an image's rotation; turning keeps every token's norm."""

    def __init__(self, hidden: int, space: TokenSpace, ratio: float, weights: torch.Tensor | None = None):
        super().__init__()
        self.head = nn.Linear(hidden, 4)
        # the planes: a fixed random pairing of the hidden dimensions (one left alone if hidden is odd)
        dims = torch.randperm(hidden, generator=torch.Generator().manual_seed(0))[: hidden - hidden % 2]
        self.register_buffer("first", dims[0::2].clone(), persistent=False)
        self.register_buffer("second", dims[1::2].clone(), persistent=False)

    def turn(self, embeds: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
        """``embeds`` with sample i turned by ``turns[i]`` quarter turns in every plane."""
        cos_sin = embeds.new_tensor([[1, 0], [0, 1], [-1, 0], [0, -1]])[turns.to(embeds.device)]  # exact quarter turns
        cos, sin = cos_sin[:, 0, None, None], cos_sin[:, 1, None, None]
        a, b = embeds[..., self.first], embeds[..., self.second]
        out = embeds.clone()
        out[..., self.first] = cos * a - sin * b
        out[..., self.second] = sin * a + cos * b
        return out

    def loss(self, student, embeds, slot, attn, generator: torch.Generator) -> torch.Tensor:
        turns = torch.randint(4, (embeds.shape[0],), generator=generator).to(embeds.device)
        turned = torch.where(slot.unsqueeze(-1), self.turn(embeds, turns), embeds)
        logits = self.head(last_hidden(student, turned, attn)[:, 0]).float()
        return F.cross_entropy(logits, turns)


TASKS = {"replaced": ReplacedTokenDetection, "shuffle": ShuffleDetection, "rotation": RotationPrediction}


def build_task(name: str, hidden: int, space: TokenSpace, ratio: float, weights: torch.Tensor | None = None) -> nn.Module | None:
    """The pretext task ``name`` (None for "none"); ``weights``: the replaced-token task's draw weights."""
    return None if name == "none" else TASKS[name](hidden, space, ratio, weights)
