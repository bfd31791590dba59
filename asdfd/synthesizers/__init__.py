"""Registry of pseudo-sample synthesizers: one file per method, registered here by name."""

from __future__ import annotations

from ..config import DistillConfig
from ..errors import UserError
from .as_dfd import ASDFD
from .base import Synthesizer
from .batch import PseudoBatch
from .finetune import Finetune
from .general_text import GeneralText
from .generator import ModifiedDAFL, ModifiedZSKT
from .lm_noprompt import LMTextNoPrompt
from .lm_text import LMText
from .random_text import RandomText
from .real_kd import RealKD

REGISTRY: dict[str, type[Synthesizer]] = {
    cls.name: cls for cls in (ASDFD, RandomText, ModifiedZSKT, ModifiedDAFL, RealKD, Finetune, GeneralText, LMText, LMTextNoPrompt)
}


def available() -> list[str]:
    return sorted(REGISTRY)


def lookup(name: str) -> type[Synthesizer]:
    if name not in REGISTRY:
        raise UserError(f"unknown method '{name}'; choose one of {', '.join(available())}")
    return REGISTRY[name]


def configure(cfg: DistillConfig) -> DistillConfig:
    """``cfg`` ready to run: its method's defaults filled in, its method's checks and the shared ones passed."""
    cls = lookup(cfg.method)
    cls.fill_defaults(cfg)
    cfg.validate()
    cls.check(cfg)
    return cfg


def build(name: str, *args, **kwargs) -> Synthesizer:
    return lookup(name)(*args, **kwargs)


__all__ = [
    "ASDFD",
    "Finetune",
    "GeneralText",
    "LMText",
    "ModifiedDAFL",
    "ModifiedZSKT",
    "PseudoBatch",
    "RandomText",
    "RealKD",
    "Synthesizer",
    "available",
    "build",
    "configure",
    "lookup",
]
