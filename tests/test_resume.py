"""Checkpoints and --resume: a killed or interrupted run continues to the result it would have had."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from asdfd.checkpoint import CHECKPOINT, partial_dir
from asdfd.cli import main

from .test_cli import _distill_args

STEPS = ["--student-steps", "60", "--checkpoint-every", "2", "--pseudo-samples", "120"]


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


def _same_student(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    # A key bias adds the same amount to every score of a query, which the softmax cancels: its true
    # gradient is zero, so AdamW's normalised steps turn rounding noise into moves of up to lr per
    # step, and two runs whose arithmetic differs in the last bits (here the spawned process and
    # the in-process run, on some CPUs) end apart. It changes no output, so it is left out.
    bad = {
        k: float((wa[k] - wb[k]).abs().max()) for k in wa if not k.endswith("attention.self.key.bias") and not torch.allclose(wa[k], wb[k], atol=1e-5)
    }
    assert not bad, bad
    ra, rb = (json.loads((f / "distill_report.json").read_text()) for f in (a, b))
    assert ra["synthesis"]["pseudo_samples"] == rb["synthesis"]["pseudo_samples"]


def _spawn(argv: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "asdfd", *argv], env=env, stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    t0 = time.time()
    while not path.is_file():
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() - t0 < timeout
        time.sleep(0.02)


def _crash_at_step_7(monkeypatch, argv: list[str]) -> None:
    """Run ``asdfd`` with ``argv`` until its 7th student step raises, as a power cut would."""
    import asdfd.objective as objective

    real, calls = objective.StudentObjective.__call__, {"n": 0}

    def crash(self, *a):
        calls["n"] += 1
        if calls["n"] == 7:
            raise RuntimeError("power cut")
        return real(self, *a)

    monkeypatch.setattr(objective.StudentObjective, "__call__", crash)
    with pytest.raises(RuntimeError, match="power cut"):
        main(argv)
    monkeypatch.setattr(objective.StudentObjective, "__call__", real)


@pytest.fixture
def uninterrupted(tiny_teacher_dir, tmp_path) -> Path:
    out = tmp_path / "whole"
    assert main(_distill_args(tiny_teacher_dir, out, *STEPS)) == 0
    assert not partial_dir(out).exists()  # a finished run leaves no partial folder
    return out


def test_a_crash_resumes_to_the_same_student(tiny_teacher_dir, tmp_path, uninterrupted, monkeypatch, capsys):
    out = tmp_path / "crashed"
    _crash_at_step_7(monkeypatch, _distill_args(tiny_teacher_dir, out, *STEPS))
    ckpt = partial_dir(out) / CHECKPOINT
    assert torch.load(ckpt, weights_only=True)["step"] == 6 and not out.exists()
    # a fresh start would silently lose that work: refused; a changed config cannot resume
    capsys.readouterr()
    assert main(_distill_args(tiny_teacher_dir, out, *STEPS)) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert main(_distill_args(tiny_teacher_dir, out, *STEPS, "--lr", "1e-3", "--resume")) == 2
    assert "different config (lr" in capsys.readouterr().err
    assert main(_distill_args(tiny_teacher_dir, out, *STEPS, "--resume")) == 0
    _same_student(out, uninterrupted)
    assert not partial_dir(out).exists()


def test_resume_without_a_checkpoint_is_refused(tiny_teacher_dir, tmp_path, capsys):
    assert main(_distill_args(tiny_teacher_dir, tmp_path / "new", "--resume")) == 2
    assert "found no checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_sigkill_mid_run_then_resume(tiny_teacher_dir, tmp_path, uninterrupted):
    out = tmp_path / "killed"
    proc = _spawn(_distill_args(tiny_teacher_dir, out, *STEPS))
    _wait_for(partial_dir(out) / CHECKPOINT, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    step = torch.load(partial_dir(out) / CHECKPOINT, weights_only=True)["step"]  # whole, not torn
    assert 2 <= step < 60
    assert main(_distill_args(tiny_teacher_dir, out, *STEPS, "--resume")) == 0
    _same_student(out, uninterrupted)


def test_sigint_saves_a_checkpoint_and_stops_cleanly(tiny_teacher_dir, tmp_path, uninterrupted):
    out = tmp_path / "stopped"
    proc = _spawn(_distill_args(tiny_teacher_dir, out, *STEPS))
    _wait_for(partial_dir(out) / CHECKPOINT, proc)  # the loop is running
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted after student step" in err and "--resume" in err and "Traceback" not in err
    step = torch.load(partial_dir(out) / CHECKPOINT, weights_only=True)["step"]
    assert 2 <= step < 60 and not out.exists()
    assert main(_distill_args(tiny_teacher_dir, out, *STEPS, "--resume")) == 0
    _same_student(out, uninterrupted)
