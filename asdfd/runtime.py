"""Process-level plumbing: devices, seeds, threads, progress bars and atomic output folders."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .errors import UserError

QUIET = False


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu or auto")
    return torch.device(name)


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        return set(next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")).split())
    except (OSError, StopIteration):
        return set()


def native_bf16(device: torch.device) -> bool:
    """Does ``device`` do bf16 arithmetic in hardware (CUDA with bf16; x86 with AVX512-BF16 or AMX,
    unless torch's kernels were capped below AVX-512, e.g. ``ATEN_CPU_CAPABILITY=avx2`` and
    ``ONEDNN_MAX_CPU_ISA=AVX2`` to run as an AVX2-only CPU would)?"""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    flags = cpu_flags()
    onednn_cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL").upper()
    capped = not torch.backends.cpu.get_cpu_capability().startswith("AVX512") or not onednn_cap.startswith(("ALL", "AVX512", "AVX10", "AMX"))
    return ("avx512_bf16" in flags or "amx_bf16" in flags) and not capped


def resolve_precision(name: str, device: torch.device) -> str:
    """``auto``: bf16 where the hardware has it, fp32 elsewhere (emulated bf16 is slower)."""
    if name == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return name


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """bf16 autocast for forward passes on ``device`` when ``precision`` is bf16; weights, optimiser
    state and losses stay fp32. At fp32 it is a no-op context."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


# torch's own thread count when asdfd was imported; a different count later is the caller's choice
_TORCH_DEFAULT_THREADS = torch.get_num_threads()


def set_threads() -> None:
    """Use every core the process may run on (torch's default counts physical cores only, which can
    leave hyper-threads or a container's share idle), unless a count was chosen already: through
    ``OMP_NUM_THREADS``, or with ``torch.set_num_threads()`` after asdfd was imported."""
    if "OMP_NUM_THREADS" in os.environ or torch.get_num_threads() != _TORCH_DEFAULT_THREADS:
        return
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        n = os.cpu_count() or 1
    torch.set_num_threads(max(1, n))


def progress(iterable=None, **kwargs):
    """tqdm with ETA; silent under --quiet, plain periodic lines when stderr is not a terminal."""
    kwargs.setdefault("disable", QUIET)
    kwargs.setdefault("dynamic_ncols", True)
    if not sys.stderr.isatty():
        kwargs.setdefault("mininterval", 10.0)
        kwargs.setdefault("ascii", True)
    return tqdm(iterable, **kwargs)


def check_output_dir(path: str | Path, overwrite: bool) -> Path:
    """Refuse to clobber a non-empty folder unless asked; check the parent is writable."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UserError(f"output '{p}' exists and is a file; pass a folder path")
    if p.exists() and any(p.iterdir()) and not overwrite:
        raise UserError(f"output folder '{p}' exists and is not empty; choose another --output or pass --overwrite")
    parent = p.resolve().parent
    while not parent.exists():
        parent = parent.parent
    try:  # a real write, not os.access: root passes access checks on read-only file systems too
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError:
        raise UserError(f"cannot write under '{parent}'; choose a writable --output") from None
    return p


class _StopFlag:
    requested = False


@contextmanager
def stop_on_sigint() -> Iterator[_StopFlag]:
    """Turn the first Ctrl-C into a request (``flag.requested``) that the loop honours at the end
    of the current step; a second Ctrl-C interrupts at once. Outside the main thread, a no-op."""
    flag = _StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        flag.requested = True
        signal.signal(signal.SIGINT, previous)
        tqdm.write("stopping after this step (Ctrl-C again to abort at once)")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to a temporary sibling, then rename it over ``path``: never a torn file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces ``path`` in one rename.

    A crash leaves ``path`` as it was (and a ``.tmp-*`` folder that is safe to delete).
    """
    p = Path(path).resolve()
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{p.name}-", dir=p.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the result is an ordinary folder
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if p.exists():
        old = p.with_name(f".old-{p.name}-{os.getpid()}")
        p.rename(old)
        tmp.rename(p)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(p)


def files_sha256(files) -> str:
    """One SHA-256 over the bytes of ``files``, in the order given, read in chunks."""
    h = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()
