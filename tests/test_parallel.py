"""Data-parallel distillation: two CPU processes over gloo, launched by `asdfd distill --num-processes 2`
(accelerate launch underneath). The ranks must keep one student and craft different samples."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import psutil
import pytest
import torch

from asdfd import parallel
from asdfd.checkpoint import CHECKPOINT, partial_dir
from asdfd.cli import main
from asdfd.config import DistillConfig
from asdfd.distiller import distill
from asdfd.errors import UserError

from .test_cli import _distill_args
from .test_resume import _same_student, _spawn, _wait_for

# 2 processes x 4 samples per student batch; long enough to be killed after the first checkpoint
BUDGET = ["--num-processes", "2", "--student-steps", "160", "--checkpoint-every", "20", "--pseudo-samples", "320"]


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "asdfd", *argv], env=env, capture_output=True, text=True, timeout=600)


def test_two_processes_keep_one_student_craft_different_samples_and_resume(tiny_teacher_dir, tmp_path):
    whole = tmp_path / "whole"
    done = _run(_distill_args(tiny_teacher_dir, whole, *BUDGET))
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("written to") == 1  # rank 0 speaks, and writes
    report = json.loads((whole / "distill_report.json").read_text())
    dp = report["data_parallel"]
    assert dp["processes"] == 2 and report["config"]["num_processes"] == 2
    assert dp["student_sha256"][0] == dp["student_sha256"][1]  # gradients averaged: one student
    assert dp["pool_sha256"][0] != dp["pool_sha256"][1]  # per-rank seeds: different pseudo samples
    assert dp["pseudo_samples_per_rank"] == [160, 160] and report["synthesis"]["pseudo_samples"] == 320
    assert not partial_dir(whole).exists()

    # Ctrl-C (SIGINT to the launcher, as a terminal sends it) after a checkpoint: the launcher hands
    # it to the ranks, which stop together after one more checkpoint; resumed: the uninterrupted student
    out = tmp_path / "stopped"
    proc = _spawn(_distill_args(tiny_teacher_dir, out, *BUDGET))
    _wait_for(partial_dir(out) / CHECKPOINT, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    said = [ln for ln in err.splitlines() if ln.startswith("asdfd:")]
    assert len(said) == 1 and "rerun the same command with --resume" in said[0], err
    assert "Traceback" not in err and not out.exists()
    assert not psutil.Process().children(recursive=True)  # no rank left behind
    assert main(_distill_args(tiny_teacher_dir, out, *BUDGET, "--num-processes", "1", "--resume")) == 2  # not as 1 process
    resumed = _run(_distill_args(tiny_teacher_dir, out, *BUDGET, "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    _same_student(whole, out)


def test_a_rank_failure_is_one_line_and_exit_2(tiny_teacher_dir, tmp_path):
    """Errors the ranks find (here: a seq length over the teacher's positions) are printed once."""
    res = _run(_distill_args(tiny_teacher_dir, tmp_path / "o", "--num-processes", "2", "--max-len", "100"))
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.strip().splitlines() if ln]
    assert len(lines) == 1 and lines[0].startswith("asdfd: error:") and "positions" in lines[0], res.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--num-processes", "2", "--batch-size", "7"], "does not split over 2 processes"),
        (["--num-processes", "0"], "num_processes must be a positive integer"),
    ],
)
def test_bad_process_counts_are_refused_before_launch(tiny_teacher_dir, tmp_path, capsys, extra, needle):
    assert main(_distill_args(tiny_teacher_dir, tmp_path / "o", *extra)) == 2
    assert needle in capsys.readouterr().err


def test_one_process_never_claims_to_be_several(tiny_teacher_dir, tmp_path, capsys):
    with pytest.raises(UserError, match="needs a launcher"):
        distill(tiny_teacher_dir, tmp_path / "o", DistillConfig(num_processes=2, device="cpu"))
    assert main(["demo", "--num-processes", "2", "--output", str(tmp_path / "d"), "--quiet"]) == 2
    assert "--num-processes is for asdfd distill" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() and not (tmp_path / "d").exists()


def test_local_share_of_a_global_config():
    cfg = DistillConfig(batch_size=32, pseudo_samples=100, replay_size=4096, heldout_samples=9, seed=3)
    one = parallel.local_config(cfg, parallel.Ranks())
    assert one is cfg
    r1 = parallel.local_config(cfg, parallel.Ranks(index=1, count=4))
    assert (r1.seed, r1.batch_size, r1.pseudo_samples, r1.replay_size, r1.heldout_samples) == (4, 8, 25, 1024, 3)
    assert cfg.batch_size == 32  # the global config is left alone


def _average_on_rank(rank: int, port: int, out: str) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        ranks = parallel.Ranks(index=rank, count=2)
        shared, only_rank0, unused = (torch.nn.Parameter(torch.zeros(3)) for _ in range(3))
        shared.grad = torch.full((3,), float(rank + 1))  # 1 on rank 0, 2 on rank 1
        if rank == 0:
            only_rank0.grad = torch.full((3,), 4.0)
        ranks.average_gradients([shared, only_rank0, unused])
        assert ranks.all(rank == 0) is False and ranks.any(rank == 0) is True
        assert ranks.sum([1.0, rank]) == [2.0, 1.0]
        torch.save({"shared": shared.grad, "only_rank0": only_rank0.grad, "unused": unused.grad}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_gradients_are_averaged_like_ddp_and_unused_ones_stay_none(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_average_on_rank, args=(port, str(tmp_path / "grads")), nprocs=2)
    for rank in (0, 1):
        got = torch.load(tmp_path / f"grads.{rank}", weights_only=True)
        assert torch.equal(got["shared"], torch.full((3,), 1.5))
        assert torch.equal(got["only_rank0"], torch.full((3,), 2.0))  # a rank without it adds zero
        assert got["unused"] is None  # as in one process: AdamW skips it
