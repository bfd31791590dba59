"""Teacher loading, student construction, and the embedding-space view both models share.

Nothing here is BERT-specific: any encoder classifier whose layers live under ``...layer.<i>...``
in its state dict and whose forward takes ``inputs_embeds`` works (BERT, MiniLM, MPNet, RoBERTa).
"""

from __future__ import annotations

import copy
import inspect
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel

from .assets import model_folder
from .errors import UserError

_LAYER_RE = re.compile(r"(\.layer\.)(\d+)(\.)")


PICKLED_WEIGHTS = "pytorch_model.bin"


def _check_model_dir(path: str | Path, allow_pickle: bool = False) -> Path:
    p = model_folder(path)
    if not p.is_dir():
        raise UserError(f"model directory '{p}' does not exist; pass the folder written by save_pretrained")
    if not (p / "config.json").is_file():
        raise UserError(f"'{p}' is not a model directory (no config.json); pass the folder written by save_pretrained")
    if not any(p.glob("*.safetensors")) and not (allow_pickle and (p / PICKLED_WEIGHTS).is_file()):
        hint = f", or pass --allow-pickle to read its {PICKLED_WEIGHTS} as tensors only" if (p / PICKLED_WEIGHTS).is_file() else ""
        raise UserError(
            f"'{p}' has no .safetensors weights; asdfd loads safetensors (convert with model.save_pretrained(dir, safe_serialization=True)){hint}"
        )
    return p


def _load_pickled(p: Path, config) -> PreTrainedModel:
    """Weights from a pickle, read with ``weights_only=True``: tensors and plain containers only, so a
    file that tries to run code on load is refused instead of executed."""
    try:
        state = torch.load(p / PICKLED_WEIGHTS, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError for payloads; anything else is a broken file
        raise UserError(f"refusing {p / PICKLED_WEIGHTS}: it is not a plain tensor file ({type(e).__name__}); convert it to safetensors") from None
    if not isinstance(state, dict):
        raise UserError(f"{p / PICKLED_WEIGHTS} does not hold a state dict; convert it to safetensors")
    model = AutoModelForSequenceClassification.from_config(config, trust_remote_code=False)
    missing, _ = model.load_state_dict(state, strict=False)
    params = dict(model.named_parameters())
    missing = [k for k in missing if k in params]
    if missing:
        raise UserError(f"{p / PICKLED_WEIGHTS} lacks {len(missing)} weights of a {type(model).__name__} (e.g. {missing[0]}); is it the right model?")
    return model


def load_classifier(path: str | Path, *, require_head: bool = True, allow_pickle: bool = False) -> PreTrainedModel:
    """Load a sequence classifier from safetensors (or, only when allowed, from a pickle read as
    tensors only), never running remote code."""
    p = _check_model_dir(path, allow_pickle)
    config = AutoConfig.from_pretrained(p, trust_remote_code=False)
    archs = config.architectures or []
    if require_head and archs and not any("SequenceClassification" in a for a in archs):
        raise UserError(f"'{p}' holds a {archs[0]} without a classification head; fine-tune it first (asdfd train-teacher --base DIR ...)")
    if require_head and getattr(config, "num_labels", 2) < 2:
        raise UserError(f"'{p}' has num_labels={config.num_labels} (a regression head); asdfd distils classifiers with >= 2 labels")
    if any(p.glob("*.safetensors")):
        model = AutoModelForSequenceClassification.from_pretrained(p, use_safetensors=True, trust_remote_code=False)
    else:
        model = _load_pickled(p, config)
    if "inputs_embeds" not in inspect.signature(model.forward).parameters:
        raise UserError(
            f"'{p}' ({type(model).__name__}) cannot take inputs_embeds; use a teacher whose forward accepts them (BERT, MiniLM, MPNet, RoBERTa, ...)"
        )
    return model


def load_tokenizer(path: str | Path):
    return AutoTokenizer.from_pretrained(str(model_folder(path)), trust_remote_code=False)


def load_teacher(path: str | Path, allow_pickle: bool = False) -> PreTrainedModel:
    """The frozen teacher: eval mode, no gradients on its weights."""
    model = load_classifier(path, allow_pickle=allow_pickle)
    model.eval()
    model.requires_grad_(False)
    return model


def evenly_spaced_layers(n_teacher: int, n_student: int) -> list[int]:
    """Teacher layers a student of ``n_student`` layers copies: evenly spaced, ending at the top.

    6 -> 3 gives [1, 3, 5]; 12 -> 4 gives [2, 5, 8, 11]; 12 -> 6 gives [1, 3, 5, 7, 9, 11].
    """
    if not 0 < n_student <= n_teacher:
        raise UserError(f"student layers must be between 1 and {n_teacher} (the teacher's depth); got {n_student}")
    step = n_teacher / n_student
    return [int(round(step * (i + 1))) - 1 for i in range(n_student)]


def resolve_student_layers(n_teacher: int, spec: int | list[int] | str) -> list[int]:
    """``3`` -> evenly spaced 3 layers; ``"0,2,5"`` or ``[0, 2, 5]`` -> that explicit list."""
    if isinstance(spec, str):
        parts = [s for s in spec.replace(" ", "").split(",") if s]
        try:
            spec = [int(s) for s in parts] if len(parts) > 1 else int(parts[0])
        except (ValueError, IndexError):
            raise UserError(f"--student '{spec}' is not a number or a comma-separated list of layer indices") from None
    if isinstance(spec, int):
        if spec >= n_teacher or spec <= 0:
            raise UserError(f"--student {spec} must be between 1 and {n_teacher - 1} (the teacher has {n_teacher} layers)")
        return evenly_spaced_layers(n_teacher, spec)
    layers = list(spec)
    if not layers or len(set(layers)) != len(layers) or sorted(layers) != layers:
        raise UserError(f"--student {layers} must be distinct teacher layer indices in increasing order")
    if layers[0] < 0 or layers[-1] >= n_teacher:
        raise UserError(f"--student {layers} must index teacher layers 0..{n_teacher - 1}")
    if len(layers) >= n_teacher:
        raise UserError(f"--student {layers} keeps all {n_teacher} teacher layers; choose fewer")
    return layers


def teacher_key(key: str, layers: list[int]) -> str:
    """The teacher's name of a student weight: student layer ``j`` is teacher layer ``layers[j]``."""
    return _LAYER_RE.sub(lambda m: f"{m.group(1)}{layers[int(m.group(2))]}{m.group(3)}", key, count=1)


def build_student(teacher: PreTrainedModel, layers: list[int]) -> PreTrainedModel:
    """A student of the teacher's class and width with ``len(layers)`` layers copied from it.

    Embeddings, pooler and classifier are copied too; every other weight keeps its name. The
    student's word-embedding matrix is frozen: it is the shared vocabulary space in which pseudo
    embeddings live, so it must stay identical to the teacher's.
    """
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = len(layers)
    config.architectures = [type(teacher).__name__]
    config.asdfd_teacher_layers = list(layers)
    student = type(teacher)(config)
    t_state = teacher.state_dict()
    new_state = {}
    for key in student.state_dict():
        src = teacher_key(key, layers)
        if src not in t_state:
            raise UserError(f"cannot map student weight '{key}' to the teacher ('{src}' missing); this architecture is not supported")
        new_state[key] = t_state[src].detach().clone()
    student.load_state_dict(new_state, strict=True)
    student.get_input_embeddings().weight.requires_grad_(False)
    student.train()
    return student


@dataclass
class TokenSpace:
    """What pseudo samples are built from: the teacher's word embeddings and special tokens."""

    embeddings: torch.Tensor  # (V, d), detached
    cls_id: int
    sep_id: int
    pad_id: int
    ordinary: torch.Tensor  # (n,) ids of ordinary word pieces: no special, [unusedN] or <...> slots
    max_positions: int
    tokenizer: object = None  # the teacher's tokenizer (the data-driven references tokenize real text)

    @classmethod
    def from_teacher(cls, teacher: PreTrainedModel, tokenizer) -> TokenSpace:
        E = teacher.get_input_embeddings().weight.detach()
        cls_id = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
        sep_id = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        max_pos = cls.positions(teacher.config, tokenizer)
        special = set(tokenizer.all_special_ids)
        vocab = tokenizer.get_vocab()
        ordinary = sorted(i for tok, i in vocab.items() if i < E.shape[0] and i not in special and not re.fullmatch(r"\[.*\]|<.*>", tok))
        return cls(E, int(cls_id), int(sep_id), int(pad_id), torch.tensor(ordinary, dtype=torch.long), max_pos, tokenizer)

    @staticmethod
    def positions(config, tokenizer) -> int:
        """How many positions a model reads (RoBERTa-style models offset them by padding_idx + 1)."""
        max_pos = int(getattr(config, "max_position_embeddings", 512))
        if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert", "mpnet"):
            max_pos -= (tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0) + 1
        return max_pos

    @property
    def vocab_size(self) -> int:
        return self.embeddings.shape[0]

    def norm_range(self, lo_q: float = 0.05, hi_q: float = 0.95) -> tuple[float, float]:
        norms = self.embeddings[self.ordinary].norm(dim=-1)
        return float(torch.quantile(norms, lo_q)), float(torch.quantile(norms, hi_q))

    def frame(self, lengths: torch.Tensor, max_len: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Template for ``[CLS] z_1..z_L [SEP] pad..``: (base embeds, slot mask, attention mask).

        ``slot`` marks the positions that pseudo tokens fill; ``base`` holds CLS/SEP/PAD elsewhere.
        """
        B = lengths.shape[0]
        T = max_len + 2
        pos = torch.arange(T).unsqueeze(0).expand(B, T)
        L = lengths.unsqueeze(1)
        ids = torch.full((B, T), self.pad_id, dtype=torch.long)
        ids[:, 0] = self.cls_id
        ids[pos == L + 1] = self.sep_id
        slot = (pos >= 1) & (pos <= L)
        attn = (pos <= L + 1).long()
        return self.embeddings[ids], slot, attn

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """Ids of the ordinary word pieces nearest (L2) to each vector of ``z`` (..., d)."""
        E = self.embeddings[self.ordinary].to(z)
        flat = z.reshape(-1, z.shape[-1])
        dist = (E * E).sum(-1)[None, :] - 2 * flat @ E.T  # ||z||^2 is the same for every candidate
        return self.ordinary.to(z.device)[dist.argmin(-1)].reshape(z.shape[:-1])

    @staticmethod
    def compose(z: torch.Tensor, base: torch.Tensor, slot: torch.Tensor) -> torch.Tensor:
        """Place pseudo tokens ``z`` (B, max_len, d) into the frame; differentiable in ``z``."""
        z_full = torch.nn.functional.pad(z, (0, 0, 1, 1))
        return torch.where(slot.unsqueeze(-1), z_full, base)
