"""The distillation loop end to end on tiny random models."""

from __future__ import annotations

import pytest
import torch

from asdfd.models import build_student, evenly_spaced_layers, load_teacher

from .conftest import tiny_distill_config


# general-text reads its packaged general corpus, never the task's data
@pytest.mark.parametrize(
    "method, extra",
    [
        ("as-dfd", {}),
        ("random-text", {}),
        ("modified-zskt", {}),
        ("modified-dafl", {}),
        ("general-text", {}),
        ("lm-text", {}),
    ],
)
def test_data_free_methods_never_read_real_data(tiny_teacher_dir, tiny_lm, monkeypatch, method, extra):
    import asdfd.data
    import asdfd.synthesizers.real_kd
    from asdfd.distiller import distill

    def forbidden(*a, **k):
        raise AssertionError("the distiller read real data")

    monkeypatch.setattr(asdfd.data, "load_dataset", forbidden)
    monkeypatch.setattr(asdfd.data, "_read_file", forbidden)
    monkeypatch.setattr(asdfd.synthesizers.real_kd, "load_dataset", forbidden)
    result = distill(tiny_teacher_dir, None, tiny_distill_config(method=method, data="trec", **extra))
    assert result.report["real_data_used"] is False


def test_tiny_batches_distil(tiny_teacher_dir):
    from asdfd.distiller import distill

    result = distill(tiny_teacher_dir, None, tiny_distill_config(batch_size=2, replay_size=8, pseudo_samples=4))
    assert result.report["synthesis"]["pseudo_samples"] == 4


def test_bf16_autocast_runs_and_tracks_fp32(tiny_teacher_dir):
    """bf16 changes the arithmetic, not the method: the same seed gives nearly the same student."""
    from asdfd.distiller import distill

    students = {}
    for precision in ("fp32", "bf16"):
        cfg = tiny_distill_config(student_steps=6, pseudo_samples=16, batch_size=4, precision=precision)
        result = distill(tiny_teacher_dir, None, cfg)
        assert result.report["config"]["precision"] == precision
        students[precision] = torch.nn.utils.parameters_to_vector(result.student.parameters())
        assert torch.isfinite(students[precision]).all()
    start = build_student(load_teacher(tiny_teacher_dir), evenly_spaced_layers(4, 2))
    moved = students["fp32"] - torch.nn.utils.parameters_to_vector(start.parameters())
    gap = (students["bf16"] - students["fp32"]).norm() / moved.norm()
    assert 0 < gap < 0.5, gap
