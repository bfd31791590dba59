"""Registry of pseudo-sample synthesizers: one file per method, registered here by name."""

from __future__ import annotations

from .as_dfd import ASDFD
from .base import PseudoBatch, ReplayPool, Synthesizer
from .dafl import ModifiedDAFL
from .finetune import Finetune
from .general_text import GeneralText
from .random_text import RandomText
from .real_kd import RealKD
from .zskt import ModifiedZSKT

REGISTRY: dict[str, type[Synthesizer]] = {cls.name: cls for cls in (ASDFD, RandomText, ModifiedZSKT, ModifiedDAFL, RealKD, Finetune, GeneralText)}


def available() -> list[str]:
    return sorted(REGISTRY)


def build(name: str, *args, **kwargs) -> Synthesizer:
    return REGISTRY[name](*args, **kwargs)


__all__ = [
    "ASDFD",
    "Finetune",
    "GeneralText",
    "ModifiedDAFL",
    "ModifiedZSKT",
    "PseudoBatch",
    "RandomText",
    "RealKD",
    "ReplayPool",
    "Synthesizer",
    "available",
    "build",
]
