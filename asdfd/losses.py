"""The student's distillation losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``tau^2 * KL(softmax(t/tau) || softmax(s/tau))`` averaged over the batch (0 when the logits are equal)."""
    t = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    return (F.kl_div(s, t, log_target=True, reduction="none").sum(-1) * temperature**2).mean()


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
