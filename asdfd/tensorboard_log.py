"""TensorBoard scalars of a distillation run (``--tensorboard``)."""

from __future__ import annotations

from pathlib import Path

from tqdm.auto import tqdm

from . import runtime
from .errors import UserError


class TensorBoard:
    def __init__(self, writer):
        self.writer = writer

    @classmethod
    def open(cls, log_dir: str | Path) -> TensorBoard:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UserError("--tensorboard needs the tensorboard package; pip install tensorboard (or asdfd[tensorboard])") from None
        if not runtime.QUIET:
            tqdm.write(f"TensorBoard logs: tensorboard --logdir {log_dir}")
        return cls(SummaryWriter(str(log_dir)))

    def log_step(self, step: int, logs: dict[str, float], lr: float, stats: dict | None) -> None:
        for name, value in logs.items():
            self.writer.add_scalar(f"loss/{name}", value, step)
        self.writer.add_scalar("lr", lr, step)
        if stats:  # running means over the samples crafted so far
            for key in ("teacher_mean_max_prob", "teacher_mean_target_prob"):
                if stats.get(key) is not None:
                    self.writer.add_scalar(f"synthesis/{key}", stats[key], step)

    def close(self, agreement: float | None = None, step: int = 0) -> None:
        if agreement is not None:
            self.writer.add_scalar("heldout/pseudo_agreement", agreement, step)
        self.writer.close()
