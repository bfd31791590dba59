"""Registry of pseudo-sample synthesizers: one file per method, registered here by name."""

from __future__ import annotations

from .as_dfd import ASDFD
from .base import PseudoBatch, ReplayPool, Synthesizer
from .random_text import RandomText

REGISTRY: dict[str, type[Synthesizer]] = {cls.name: cls for cls in (ASDFD, RandomText)}


def available() -> list[str]:
    return sorted(REGISTRY)


def build(name: str, *args, **kwargs) -> Synthesizer:
    return REGISTRY[name](*args, **kwargs)


__all__ = ["ASDFD", "PseudoBatch", "RandomText", "ReplayPool", "Synthesizer", "available", "build"]
