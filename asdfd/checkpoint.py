"""Checkpoints of a distillation run, kept beside the output folder until the run finishes.

A run into ``OUTPUT`` works in ``.OUTPUT.partial/`` (checkpoint, TensorBoard logs); the finished
student appears atomically as ``OUTPUT`` and the partial folder is removed. A checkpoint is written
to a temporary file, flushed to disk and renamed over the previous one, so a kill at any moment
leaves the old or the new checkpoint, never a torn one. It is read back with
``torch.load(weights_only=True)``: tensors, numbers, strings and containers only.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .config import drop_retired
from .errors import UserError

CHECKPOINT = "checkpoint.pt"
# options that may differ between a run and its resumption (they do not change the arithmetic)
RESUMABLE_DIFFERENCES = ("tensorboard", "checkpoint_every")


class Interrupted(UserError):
    """The run stopped on SIGINT after saving a checkpoint."""


def partial_dir(output: str | Path) -> Path:
    out = Path(output).resolve()
    return out.parent / f".{out.name}.partial"


def save_checkpoint(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        torch.save(state, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: Path, config: dict) -> dict:
    """The checkpoint at ``path``, refused when it was made with a different config."""
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as e:  # a file that is not a checkpoint, or one from an incompatible version
        raise UserError(f"cannot read checkpoint {path} ({type(e).__name__}); start over without --resume") from None
    saved = drop_retired(state.get("config", {}), f"checkpoint {path}")
    diff = [k for k in sorted(set(saved) | set(config)) if k not in RESUMABLE_DIFFERENCES and saved.get(k) != config.get(k)]
    if diff:
        shown = ", ".join(f"{k} {saved.get(k)!r} -> {config.get(k)!r}" for k in diff[:3])
        raise UserError(
            f"the checkpoint in {path.parent} was made with a different config ({shown}); "
            "resume with the same options, or start over with --overwrite"
        )
    return state


def rng_state(generator: torch.Generator) -> dict:
    state = {"torch": torch.get_rng_state(), "generator": generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
