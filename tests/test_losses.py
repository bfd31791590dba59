"""The student's distillation losses."""

from __future__ import annotations

import torch

from asdfd.losses import hidden_loss, kd_loss


def test_kd_loss_zero_for_identical_logits_and_positive_otherwise():
    logits = torch.randn(5, 4)
    assert abs(float(kd_loss(logits, logits.clone(), 2.0))) < 1e-6
    assert float(kd_loss(logits, torch.randn(5, 4), 2.0)) > 0
    # tau^2 * KL at the temperature: two classes, one sure teacher
    teacher, student = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 0.0]])
    p = torch.tensor([1.0, 0.0]).softmax(-1)  # the teacher at tau 2
    assert abs(float(kd_loss(student, teacher, 2.0)) - 4 * float((p * (p / 0.5).log()).sum())) < 1e-6


def test_hidden_loss_zero_when_copied_layers_match():
    h_t = tuple(torch.randn(2, 5, 8) for _ in range(5))  # embeddings + 4 layers
    layers = [1, 3]
    h_s = (h_t[0], h_t[2], h_t[4])
    mask = torch.ones(2, 5)
    assert float(hidden_loss(h_s, h_t, layers, mask)) < 1e-9
    assert float(hidden_loss((h_t[0], h_t[1], h_t[2]), h_t, layers, mask)) > 0
