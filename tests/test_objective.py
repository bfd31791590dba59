"""The student's objective and its guarded optimiser step."""

from __future__ import annotations

import pytest
import torch

from .conftest import tiny_distill_config


@pytest.mark.parametrize(
    "kw",
    [
        {"method": "as-dfd", "mix": 0.5},  # mixtures: labelled in the step's own teacher pass
        {"method": "as-dfd", "mix": 0.0, "lambda_hidden": 0.0},  # pooled logits suffice: no pass at all
        {"method": "random-text"},
    ],
)
def test_the_teacher_runs_at_most_once_per_student_step(tiny_teacher_dir, kw):
    from asdfd.distiller import Distiller

    cfg = tiny_distill_config(student_steps=3, pseudo_samples=8, batch_size=4, **kw)
    d = Distiller(tiny_teacher_dir, cfg)
    for _ in range(2):
        d.synth.synthesize(d.student)
    rows = []
    d.teacher.register_forward_hook(lambda module, args, kwargs, out: rows.append(len(out.logits)), with_kwargs=True)
    batch = d.synth.sample(cfg.batch_size)
    d.update(d.objective(batch)[0])
    # crafted AS-DFD samples carry the teacher's logits and states: only the mixtures need a pass
    want = {"as-dfd": [round(cfg.mix * cfg.batch_size)] if cfg.mix else [], "random-text": [cfg.batch_size]}[cfg.method]
    assert rows == want
    # and what the step used is the teacher's output on that very batch
    logits, hidden = d.objective.teacher_outputs(batch, hidden=True)
    with torch.no_grad():
        again = d.teacher(inputs_embeds=batch.embeds, attention_mask=batch.attention_mask, output_hidden_states=True)
    torch.testing.assert_close(logits, again.logits, atol=1e-5, rtol=1e-5)
    for t in d.layers:
        torch.testing.assert_close(hidden[t + 1], again.hidden_states[t + 1], atol=1e-5, rtol=1e-5)


def test_real_kd_batches_are_labelled_by_the_distillers_one_pass(tiny_teacher_dir, tiny_csv):
    from asdfd.distiller import Distiller

    cfg = tiny_distill_config(method="real-kd", data=str(tiny_csv), student_steps=2, batch_size=4)
    d = Distiller(tiny_teacher_dir, cfg)
    calls = []
    d.teacher.register_forward_hook(lambda *a: calls.append(1))
    d.update(d.objective(d.synth.sample(4))[0])
    assert len(calls) == 1


def test_non_finite_steps_are_skipped_and_persistent_divergence_stops_the_run(tiny_teacher_dir, monkeypatch, tmp_path):
    import asdfd.distiller as dist
    import asdfd.objective as objective
    from asdfd.errors import UserError

    real = objective.kd_loss
    calls = {"n": 0}

    def sometimes_nan(*a, **kw):
        calls["n"] += 1
        out = real(*a, **kw)
        return out * float("nan") if calls["n"] in (2, 3) else out

    monkeypatch.setattr(objective, "kd_loss", sometimes_nan)
    result = dist.distill(tiny_teacher_dir, None, tiny_distill_config(student_steps=6))
    assert result.report["skipped_steps"] == 2
    assert all(torch.isfinite(p).all() for p in result.student.parameters())

    monkeypatch.setattr(objective, "kd_loss", lambda *a, **kw: real(*a, **kw) * float("inf"))
    with pytest.raises(UserError, match="diverged"):
        dist.distill(tiny_teacher_dir, tmp_path / "out", tiny_distill_config(student_steps=objective.MAX_BAD_STEPS + 5))
    assert not (tmp_path / "out").exists()
