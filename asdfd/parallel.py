"""Data-parallel distillation on accelerate.

``asdfd distill --num-processes N`` relaunches the same command through ``accelerate launch``
(torchrun underneath): one process per GPU, or N CPU processes talking over gloo; running
``accelerate launch --multi_gpu --num_processes N -m asdfd distill ...`` yourself does the same.
Every rank crafts its own pseudo samples (its generator is seeded ``seed + rank``) into its own
replay pool; after each student step's backward pass the gradients are averaged across ranks, so
every rank holds the same student; only rank 0 writes files.

Budgets stay global: with N processes each rank crafts and trains on 1/N of every batch (and of
the pseudo-sample, replay-pool and held-out budgets), so a run does the same arithmetic in about
1/N of the time, not N times the work.

Gradients are averaged explicitly after ``backward`` (one all-reduce of a flat buffer, as DDP's
buckets do) rather than through ``DistributedDataParallel``: DDP's reducer expects a backward pass
after every forward pass, which the skip of a non-finite step (decided by all ranks together)
would break.
"""

from __future__ import annotations

import atexit
import dataclasses
import hashlib
import logging
import math
import os
from dataclasses import dataclass

import torch

from .errors import UserError


def rank() -> int:
    """This process's rank in a launched run (0 when not launched)."""
    return int(os.environ.get("RANK", "0"))


def launched() -> bool:
    """True inside a process started by ``accelerate launch`` / torchrun with more than one rank."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@dataclass
class Ranks:
    """This process's place among the ranks of a run (one rank when not launched)."""

    index: int = 0
    count: int = 1
    device: torch.device | None = None  # the rank's own GPU in a multi-GPU run

    @property
    def main(self) -> bool:
        return self.index == 0

    @classmethod
    def current(cls, cpu: bool) -> Ranks:
        """Join the launched process group (gloo on CPU, nccl on GPUs), or one rank."""
        if not launched():
            return cls()
        from accelerate import PartialState

        state = PartialState(cpu=cpu)
        # leave the group before the interpreter exits: a gloo group torn down with the process can
        # abort it ("terminate called without an active exception") after the work is done
        atexit.register(state.destroy_process_group)
        return cls(state.process_index, state.num_processes, None if cpu else state.device)

    def wait(self) -> None:
        if self.count > 1:
            torch.distributed.barrier()

    def all(self, flag: bool) -> bool:
        """True when ``flag`` is true on every rank."""
        if self.count == 1:
            return bool(flag)
        t = torch.tensor([1 if flag else 0], device=self._comm_device())
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MIN)
        return bool(t.item())

    def any(self, flag: bool) -> bool:
        return not self.all(not flag)

    def sum(self, values: list[float]) -> list[float]:
        if self.count == 1:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self._comm_device())
        torch.distributed.all_reduce(t)
        return t.tolist()

    def average_gradients(self, params: list[torch.nn.Parameter]) -> None:
        """Replace each gradient by its mean over the ranks (one collective for all of them)."""
        if self.count == 1:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        has = torch.tensor([p.grad is not None for p in params], dtype=grads[0].dtype, device=grads[0].device)
        flat = torch.cat([*(g.reshape(-1) for g in grads), has])
        torch.distributed.all_reduce(flat)  # sum
        offset = 0
        for p, g in zip(params, grads, strict=True):
            n = g.numel()
            p.grad = flat[offset : offset + n].view_as(p) / self.count  # as DDP: a rank without one adds zero
            offset += n
        for p, ranks_with_grad in zip(params, flat[offset:].tolist(), strict=True):
            if ranks_with_grad == 0:  # no rank used it: no gradient, as in a one-process run
                p.grad = None

    def broadcast(self, params: list[torch.Tensor]) -> None:
        """Copy rank 0's values of ``params`` to every rank."""
        if self.count == 1:
            return
        with torch.no_grad():
            for p in params:
                torch.distributed.broadcast(p.data, src=0)

    def gather(self, obj) -> list | None:
        """Every rank's ``obj``, in rank order, on rank 0 (None elsewhere)."""
        if self.count == 1:
            return [obj]
        out = [None] * self.count if self.main else None
        torch.distributed.gather_object(obj, out, dst=0)
        return out

    def _comm_device(self) -> torch.device:
        return self.device if self.device is not None else torch.device("cpu")


def local_config(cfg, ranks: Ranks):
    """The share of a global config that one rank runs: 1/N of every batch and budget, its own seed."""
    n = ranks.count
    if n == 1:
        return cfg
    return dataclasses.replace(
        cfg,
        seed=cfg.seed + ranks.index,
        batch_size=cfg.batch_size // n,
        pseudo_samples=math.ceil(cfg.pseudo_samples / n),
        replay_size=math.ceil(cfg.replay_size / n),
        heldout_samples=math.ceil(cfg.heldout_samples / n),
    )


def check_world(cfg) -> None:
    """Inside a launched run, ``num_processes`` is the launch's world size (1 means 'whatever was
    launched'); outside, more than one process needs a launcher."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        if cfg.num_processes not in (1, world):
            raise UserError(f"--num-processes {cfg.num_processes} but this run was launched with {world} processes; pass the same number")
        cfg.num_processes = world
    if cfg.batch_size % cfg.num_processes:
        raise UserError(f"batch_size {cfg.batch_size} does not split over {cfg.num_processes} processes; pass a multiple of {cfg.num_processes}")


def launch(argv: list[str], n: int, cuda: bool) -> int:
    """Run ``asdfd <argv>`` in ``n`` processes through ``accelerate launch`` and return the exit
    code (0 when every rank finished; otherwise rank 0's message is already on stderr)."""
    if cuda and n > torch.cuda.device_count():
        raise UserError(f"--num-processes {n} but only {torch.cuda.device_count()} GPUs are visible; pass at most that many, or --device cpu")
    from accelerate.commands.launch import launch_command, launch_command_parser
    from accelerate.utils import patch_environment
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    # the launcher's own failure report would repeat rank 0's one-line error with a traceback
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    args = launch_command_parser().parse_args(
        ["--multi_gpu", "--num_processes", str(n), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
        + ["-m", "asdfd", *argv]
    )
    threads = os.environ.get("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // n)))  # the cores, shared out
    try:
        with patch_environment(omp_num_threads=threads):
            launch_command(args)
    except ChildFailedError as e:
        codes = [f.exitcode for f in e.failures.values()]
        return next((c for c in codes if c > 0), 1)
    except SignalException as e:
        # Ctrl-C reaches the launcher (the ranks run in their own sessions); it hands the signal on
        # and waits: the ranks stop together after a checkpoint, and rank 0 has said where it is
        return 128 + int(e.sigval)
    return 0


def report_ranks(ranks: Ranks, report: dict, student, synth) -> None:
    """Evidence in ``report`` (rank 0's) that data parallelism worked: per-rank fingerprints of the
    student (all equal) and of the replay pool (all different); sample counts summed over ranks."""
    synth_state = synth.state_dict()
    mine = {
        "student_sha256": _fingerprint(student.state_dict().values()),
        "pool_sha256": _fingerprint(_tensors(synth_state.get("pool") or synth_state)),
        "stats": synth.stats(),
    }
    gathered = ranks.gather(mine)
    if not ranks.main:
        return
    for key in ("pseudo_samples", "pooled_samples", "real_samples_seen"):
        if key in report["synthesis"]:
            report["synthesis"][key] = sum(r["stats"][key] for r in gathered)
    report["data_parallel"] = {
        "processes": ranks.count,
        "student_sha256": [r["student_sha256"] for r in gathered],
        "pool_sha256": [r["pool_sha256"] for r in gathered],
        "pseudo_samples_per_rank": [r["stats"].get("pseudo_samples", r["stats"].get("real_samples_seen")) for r in gathered],
    }


def _tensors(tree) -> list[torch.Tensor]:
    if isinstance(tree, torch.Tensor):
        return [tree]
    if isinstance(tree, dict):
        return [t for v in tree.values() for t in _tensors(v)]
    if isinstance(tree, list | tuple):
        return [t for v in tree for t in _tensors(v)]
    return []


def _fingerprint(tensors) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
