"""ONNX export of a classifier, checked against PyTorch under onnxruntime, with an optional
dynamic-int8 variant; and the runner that lets ``asdfd evaluate`` score an exported model.

An export folder holds ``model.onnx`` (inputs ``input_ids``, ``attention_mask`` and, where the
tokenizer makes them, ``token_type_ids``, with dynamic batch and sequence axes; output
``logits``), ``model.int8.onnx`` with ``--quantize int8``, the tokenizer and ``config.json`` (label
names), and ``export_report.json`` with the measured differences from the PyTorch model.
"""

from __future__ import annotations

import json
import logging
import warnings
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from transformers import AutoConfig, PreTrainedModel

from .assets import model_folder
from .errors import UserError
from .models import load_classifier, load_tokenizer
from .runtime import atomic_dir, check_output_dir, set_threads

ONNX_NAME = "model.onnx"
INT8_NAME = "model.int8.onnx"
REPORT_NAME = "export_report.json"
TOLERANCE = 1e-4  # max |logit difference| between PyTorch and onnxruntime that an export may have

# texts of very different lengths: the check exercises the dynamic batch and sequence axes
CHECK_TEXTS = [
    "a",
    "what is the capital of france ?",
    "the film was long , slow and in the end rather dull , though the cast did what they could with it",
    "markets fell sharply today after the central bank raised interest rates for the third time this year , "
    "surprising analysts who had expected a pause",
    "who wrote hamlet",
    "",
]


def _onnx_modules():
    try:
        import onnx  # noqa: F401
        import onnxruntime
        import onnxscript  # noqa: F401  (the torch.onnx exporter needs it)
    except ImportError:
        raise UserError("ONNX export and evaluation need onnx, onnxscript and onnxruntime; pip install 'asdfd[onnx]'") from None
    return onnxruntime


class _LogitsOnly(torch.nn.Module):
    """The classifier as a function of named token tensors to logits (what the graph exposes)."""

    def __init__(self, model: PreTrainedModel):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).logits


def _session(path: Path):
    ort = _onnx_modules()
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors only
    # idle worker threads sleep instead of spinning: a library call should not keep cores busy
    # after it returns (spinning threads slow down whatever runs next, PyTorch included)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _run(session, enc: dict) -> np.ndarray:
    feed = {}
    for inp in session.get_inputs():
        value = enc.get(inp.name)
        if value is None and inp.name == "token_type_ids":  # one segment, as transformers assumes
            value = torch.zeros_like(torch.as_tensor(enc["input_ids"]))
        if value is None:
            raise UserError(f"the ONNX model needs input '{inp.name}', which its tokenizer did not make; re-export it with asdfd export")
        feed[inp.name] = np.asarray(value.cpu().numpy() if torch.is_tensor(value) else value, dtype=np.int64)
    return session.run(["logits"], feed)[0]


def export_onnx(model_dir: str | Path, output: str | Path | None = None, quantize: str | None = None, overwrite: bool = False) -> dict:
    """Export ``model_dir`` to ONNX in ``output`` (default: ``<model_dir>-onnx``) and check that
    onnxruntime gives PyTorch's logits within ``TOLERANCE``; ``quantize="int8"`` adds a
    dynamic-int8 copy (its difference and agreement are reported, not bounded)."""
    ort = _onnx_modules()
    if quantize not in (None, "int8"):
        raise UserError(f"--quantize '{quantize}' is not supported; pass --quantize int8 or leave it out")
    set_threads()
    given = Path(model_dir)
    beside = given.with_name(given.name + "-onnx") if model_folder(model_dir) == given else Path(given.name + "-onnx")  # a hub name: here
    out = check_output_dir(output or beside, overwrite)
    model = load_classifier(model_dir).eval().float()
    tokenizer = load_tokenizer(model_dir)
    positions = int(getattr(model.config, "max_position_embeddings", 514)) - 2  # RoBERTa-style offsets need 2 spare
    enc = tokenizer(CHECK_TEXTS, padding=True, truncation=True, max_length=min(128, positions), return_tensors="pt")
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in enc]
    sample = tokenizer(CHECK_TEXTS[1:3], padding=True, return_tensors="pt")  # the shapes to trace with
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence", max=positions)
    with torch.no_grad():
        reference = model(**{n: enc[n] for n in names}).logits.numpy()
    report: dict = {"source": str(model_dir), "format": "onnx", "inputs": names, "tolerance": TOLERANCE, "check_texts": len(CHECK_TEXTS)}
    with atomic_dir(out) as tmp, warnings.catch_warnings(), _quiet_exporter():
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(
                _LogitsOnly(model),
                tuple(sample[n] for n in names),
                input_names=names,
                output_names=["logits"],
                dynamic_shapes=tuple({0: batch, 1: seq} for _ in names),
                dynamo=True,
                verbose=False,
            )
        except Exception as e:  # the exporter's errors are pages long; the first line names the cause
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(f"torch.onnx could not export {type(model).__name__}: {first}; nothing was written") from e
        program.save(str(tmp / ONNX_NAME))
        got = _run(_session(tmp / ONNX_NAME), enc)
        diff = float(np.abs(got - reference).max())
        if not diff <= TOLERANCE:
            raise UserError(f"the exported graph's logits differ from PyTorch's by {diff:.2e} (> {TOLERANCE:g}); nothing was written")
        report.update(max_abs_diff=diff, opset=_opset(tmp / ONNX_NAME), files={ONNX_NAME: _size(tmp / ONNX_NAME)})
        if quantize == "int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantize_dynamic(str(tmp / ONNX_NAME), str(tmp / INT8_NAME), weight_type=QuantType.QInt8)
            q = _run(_session(tmp / INT8_NAME), enc)
            report["int8"] = {
                "max_abs_diff": float(np.abs(q - reference).max()),
                "argmax_agreement": float((q.argmax(-1) == reference.argmax(-1)).mean()),
            }
            report["files"][INT8_NAME] = _size(tmp / INT8_NAME)
        report["onnxruntime"] = ort.__version__
        model.config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / REPORT_NAME).write_text(json.dumps(report, indent=2) + "\n")
    report["output"] = str(out)
    return report


@contextmanager
def _quiet_exporter():
    """The exporter logs warnings about optional packages (torchvision) it does not need here, and
    the quantizer (on the root logger) advice about a pre-processing step this graph does not pass."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _opset(path: Path) -> int:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))  # with any external-data file


def is_onnx(path: str | Path) -> bool:
    """An ``.onnx`` file, or a folder with ``model.onnx`` and no PyTorch weights."""
    p = Path(path)
    if p.is_file():
        return p.suffix == ".onnx"
    return (p / ONNX_NAME).is_file() and not any(p.glob("*.safetensors"))


class OnnxClassifier:
    """An exported classifier run by onnxruntime on CPU, shaped like a transformers model where the
    evaluator needs it (``config``, ``device``, ``eval()``, and a call returning ``.logits``)."""

    device = torch.device("cpu")

    def __init__(self, path: str | Path):
        p = Path(path)
        self.path = p if p.is_file() else p / ONNX_NAME
        self.session = _session(self.path)
        self.config = AutoConfig.from_pretrained(self.path.parent, trust_remote_code=False)

    def eval(self) -> OnnxClassifier:
        return self

    def __call__(self, **enc) -> SimpleNamespace:
        return SimpleNamespace(logits=torch.from_numpy(_run(self.session, enc)))
