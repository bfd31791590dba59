"""Distillation losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_per_sample(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``tau^2 * KL(softmax(t/tau) || softmax(s/tau))`` for each sample, shape (B,)."""
    t = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    return F.kl_div(s, t, log_target=True, reduction="none").sum(-1) * temperature**2


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float, objective: str = "kl") -> torch.Tensor:
    """The KD loss averaged over the batch (0 when the logits are equal): the tempered KL, or
    (``objective`` "mse") the mean squared difference of the raw logits. The teacher is all but
    certain on most pseudo samples, where the softmax saturates and the KL's gradient all but
    vanishes; the logits still differ there, and MSE keeps matching them."""
    if objective == "mse":
        return F.mse_loss(student_logits.float(), teacher_logits.float())
    return kd_per_sample(student_logits, teacher_logits, temperature).mean()


def hidden_loss(
    student_hidden: tuple[torch.Tensor, ...],
    teacher_hidden: tuple[torch.Tensor, ...],
    layers: list[int],
    attention_mask: torch.Tensor,
) -> torch.Tensor:
    """MSE between each student layer and the teacher layer it was copied from, over real tokens.

    Hidden-state tuples start with the embedding output, so student layer ``j`` is index ``j + 1``
    and teacher layer ``layers[j]`` is index ``layers[j] + 1``. Each term is divided by the teacher
    layer's mean square so that layers of different scale weigh alike.
    """
    mask = attention_mask.unsqueeze(-1).float()
    n = mask.sum() * student_hidden[0].shape[-1]
    total = mask.new_zeros(())
    for j, t_layer in enumerate(layers):
        s, t = student_hidden[j + 1].float(), teacher_hidden[t_layer + 1].float()
        err = ((s - t) ** 2 * mask).sum() / n
        scale = ((t**2) * mask).sum() / n
        total = total + err / scale.clamp_min(1e-6)
    return total / len(layers)


def attention_loss(
    student_attn: tuple[torch.Tensor, ...],
    teacher_attn: tuple[torch.Tensor, ...],
    layers: list[int],
    attention_mask: torch.Tensor,
) -> torch.Tensor:
    """KL(teacher || student) between the self-attention distributions of each student layer and
    the teacher layer it was copied from, averaged over heads and attended query positions.

    Attention tuples hold one (B, heads, T, T) tensor per layer (no embedding entry), so student
    layer ``j`` is index ``j`` and teacher layer ``layers[j]`` is index ``layers[j]``. Padded keys
    carry zero probability in both and add nothing.
    """
    rows = attention_mask[:, None, :, None].float()  # (B, 1, T, 1): real query positions
    n = rows.sum() * student_attn[0].shape[1]
    total = rows.new_zeros(())
    for j, t_layer in enumerate(layers):
        s, t = student_attn[j].float(), teacher_attn[t_layer].float()
        kl = torch.xlogy(t, t) - t * s.clamp_min(1e-12).log()
        total = total + (kl * rows).sum() / n
    return total / len(layers)


def input_gradient_loss(student_grad: torch.Tensor, teacher_grad: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Per sample, ``||g_S - g_T||^2 / ||g_T||^2`` over attended positions, averaged: how far the
    student's gradient with respect to the input embeddings is from the teacher's (both (B, T, d))."""
    mask = attention_mask.unsqueeze(-1).float()
    t = teacher_grad.float()
    err = ((student_grad.float() - t) ** 2 * mask).sum((1, 2))
    return (err / ((t**2) * mask).sum((1, 2)).clamp_min(1e-12)).mean()
