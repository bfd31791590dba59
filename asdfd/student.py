"""The student: which model learns, how it starts, and how it reads the teacher's pseudo samples.

``--student`` takes a count or list of teacher layers (the default: a copy of some of the
teacher's layers, at its width), a packaged encoder (``minilm``), a folder of any Hugging Face
encoder, or a fresh shape (``layers=4,hidden=256,heads=4,intermediate=1024``).

Pseudo samples live in the teacher's word-embedding space (crafted vectors, or the teacher's
vectors of a text's word pieces). A student copied from the teacher, or a fresh shape of the
teacher's width, starts from the teacher's word embeddings and reads them as they are. Any other
student reads them through an input bridge: a frozen linear map from the teacher's word-embedding
space to the student's. For a pretrained student it is fitted by least squares on the word pieces
both vocabularies share (matched by token string, specials by role); for a fresh narrower shape it
is the projection on the teacher table's top principal directions. The student's own rows for the
shared word pieces are then set to the mapped teacher rows, so the saved student, reading token ids
through its own tokenizer, sees exactly what it was trained on. Its hidden states are compared
with the teacher's through learned projections (``HiddenAdapters``), dropped at save.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, PreTrainedModel
from transformers.utils import logging as hf_logging

from .assets import BASES
from .errors import UserError
from .models import build_student, evenly_spaced_layers, load_classifier, load_tokenizer, resolve_student_layers, teacher_key

SHAPE_KEYS = {"layers": "num_hidden_layers", "hidden": "hidden_size", "heads": "num_attention_heads", "intermediate": "intermediate_size"}
MIN_COVERAGE = 0.95  # share of the teacher's ordinary word pieces the student's vocabulary must hold
MIN_SAME_SEGMENTATION = 0.95  # share of probe texts both tokenizers must cut into the same word pieces
PROBES = (
    "What is the capital of France?",
    "Who wrote the novel 'War and Peace' in 1869?",
    "The film's pacing drags, but the acting is superb!",
    "Shares fell 3.5% after the company's second-quarter report.",
    "How many calories are in a banana?",
    "An unexpectedly moving, funny and well-made documentary.",
    "The minister resigned on Tuesday amid protests in Brussels.",
    "Email me at the office before 5 pm, thanks :)",
    "Manchester United beat Chelsea 2-1 in a dramatic finale.",
    "Define the term photosynthesis.",
)


@dataclass
class Student:
    """A student model with what distilling into it needs."""

    model: PreTrainedModel
    tokenizer: object  # what the saved student reads with (the teacher's unless it brings its own)
    layer_map: list[int]  # the teacher layer each student layer learns from (hidden-state KD)
    info: dict  # for the report and the model card
    bridge: nn.Linear | None = None  # teacher word-embedding space -> the student's; None: the same space
    adapters: HiddenAdapters | None = None  # student hidden size -> teacher's, per layer; None: copied layers
    _hook: object = field(default=None, repr=False)

    def attach(self) -> None:
        """Route ``inputs_embeds`` (teacher space) through the bridge while distilling."""
        if self.bridge is not None and self._hook is None:
            bridge = self.bridge

            def to_student_space(module, args, kwargs):
                if kwargs.get("inputs_embeds") is not None:
                    kwargs["inputs_embeds"] = bridge(kwargs["inputs_embeds"].to(bridge.weight.dtype))
                return args, kwargs

            self._hook = self.model.base_model.embeddings.register_forward_pre_hook(to_student_space, with_kwargs=True)

    def to(self, device) -> Student:
        """The model, the bridge and the adapters on ``device``."""
        for part in (self.model, self.bridge, self.adapters):
            if part is not None:
                part.to(device)
        return self

    def detach(self) -> None:
        """The plain model again: it reads token ids, like the saved student."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None


class HiddenAdapters(nn.Module):
    """One linear projection per student layer from its hidden size to the teacher's (identity where
    they match): hidden-state KD for a student that is not a copy of the teacher."""

    def __init__(self, n_layers: int, student_hidden: int, teacher_hidden: int):
        super().__init__()
        self.proj = nn.ModuleList(nn.Linear(student_hidden, teacher_hidden) for _ in range(n_layers))
        if student_hidden == teacher_hidden:
            for p in self.proj:
                nn.init.eye_(p.weight)
                nn.init.zeros_(p.bias)

    def forward(self, hidden_states: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """The student's hidden states (embedding output first, left as is) in the teacher's width."""
        return (hidden_states[0], *(p(h) for p, h in zip(self.proj, hidden_states[1:], strict=True)))


def parse_shape(spec: str, teacher_config) -> dict:
    """``layers=4,hidden=256,...`` -> config overrides; unnamed keys keep the teacher's values."""
    out = {}
    for part in filter(None, spec.replace(" ", "").split(",")):
        key, _, value = part.partition("=")
        if key not in SHAPE_KEYS or not value.isdigit() or int(value) <= 0:
            raise UserError(f"--student '{spec}': '{part}' is not one of {', '.join(f'{k}=N' for k in SHAPE_KEYS)} with N >= 1")
        out[SHAPE_KEYS[key]] = int(value)
    hidden = out.get("hidden_size", teacher_config.hidden_size)
    heads = out.get("num_attention_heads", teacher_config.num_attention_heads)
    if hidden % heads:
        raise UserError(f"--student '{spec}': hidden {hidden} is not a multiple of heads {heads}; pass heads that divide it")
    return out


def build(spec, teacher: PreTrainedModel, teacher_tokenizer, allow_pickle: bool = False) -> Student:
    """The student ``spec`` names, ready to distil from ``teacher``."""
    n_teacher = int(teacher.config.num_hidden_layers)
    text = str(spec).strip()
    if isinstance(spec, int | list) or re.fullmatch(r"[-\d,\s]+", text):
        layers = resolve_student_layers(n_teacher, spec)
        info = {"spec": text, "kind": "copied teacher layers", "copied_layers": layers}
        return _described(Student(build_student(teacher, layers), teacher_tokenizer, layers, info), teacher)
    if "=" in text:
        return _fresh(text, teacher, teacher_tokenizer)
    if text in BASES and not Path(text).exists():
        folder, kind = BASES[text](), f"packaged encoder '{text}'"
    else:
        folder, kind = text, "encoder folder"
    return _pretrained(text, folder, kind, teacher, teacher_tokenizer, allow_pickle)


def _fresh(spec: str, teacher: PreTrainedModel, teacher_tokenizer) -> Student:
    """A new model of the teacher's class in the shape ``spec`` names, started from the teacher
    where shapes allow: every weight whose teacher counterpart (layers evenly spaced) has the same
    shape is copied; at another width the word, position and token-type embeddings are the teacher's
    projected on its word table's top principal directions and everything else is freshly initialised."""
    config = copy.deepcopy(teacher.config)
    for key, value in parse_shape(spec, teacher.config).items():
        setattr(config, key, value)
    n = config.num_hidden_layers
    if n > teacher.config.num_hidden_layers:
        raise UserError(f"--student '{spec}' has {n} layers, more than the teacher's {teacher.config.num_hidden_layers}; choose fewer")
    layers = evenly_spaced_layers(teacher.config.num_hidden_layers, n)
    config.architectures = [type(teacher).__name__]
    model = type(teacher)(config)
    copied = _copy_matching(model, teacher, layers)
    info = {"spec": spec, "kind": "fresh shape", "weights_from_teacher": f"{copied} of {len(model.state_dict())} tensors"}
    student = Student(model, teacher_tokenizer, layers, info)
    if config.hidden_size != teacher.config.hidden_size:
        student.bridge = _principal_bridge(teacher, config.hidden_size)
        _project_embeddings(model, teacher, student.bridge)
        info["input_bridge"] = {
            "kind": "projection on the top principal directions of the teacher's word embeddings",
            **_fit(student.bridge, teacher),
        }
        student.adapters = HiddenAdapters(n, config.hidden_size, teacher.config.hidden_size)
    elif copied < len(model.state_dict()):
        student.adapters = HiddenAdapters(n, config.hidden_size, teacher.config.hidden_size)
    model.get_input_embeddings().weight.requires_grad_(False)
    model.train()
    return _described(student, teacher)


def _pretrained(spec: str, folder, kind: str, teacher: PreTrainedModel, teacher_tokenizer, allow_pickle: bool) -> Student:
    """A pretrained encoder (with or without a head) given a fresh head for the teacher's labels."""
    t_cfg = teacher.config
    labels = {"num_labels": t_cfg.num_labels, "id2label": dict(t_cfg.id2label), "label2id": dict(t_cfg.label2id)}
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the fresh head's "newly initialized" warning is expected
    try:
        base = load_classifier(folder, require_head=False, allow_pickle=allow_pickle)
        config = copy.deepcopy(base.config)
        config.update(labels)
        model = AutoModelForSequenceClassification.from_config(config, trust_remote_code=False)
        state = {k: v for k, v in base.state_dict().items() if not _is_head(k)}
        model.load_state_dict(state, strict=False)
    finally:
        hf_logging.set_verbosity(verbosity)
    n = int(config.num_hidden_layers)
    if n > t_cfg.num_hidden_layers:
        raise UserError(f"--student '{spec}' has {n} layers, more than the teacher's {t_cfg.num_hidden_layers}; a student should be smaller")
    tokenizer = load_tokenizer(folder)
    bridge, s_ids, t_ids, vocab = fit_bridge(teacher, teacher_tokenizer, model, tokenizer, spec)
    student = Student(model, tokenizer, evenly_spaced_layers(t_cfg.num_hidden_layers, n), {"spec": spec, "kind": kind, "vocabulary": vocab})
    student.bridge = bridge
    student.info["input_bridge"] = {"kind": "least-squares linear map fitted on the shared word pieces", **_fit(bridge, teacher, model, s_ids, t_ids)}
    with torch.no_grad():  # the shared rows become the mapped teacher rows: the saved student reads what it was trained on
        table = model.get_input_embeddings().weight
        table[s_ids] = student.bridge(teacher.get_input_embeddings().weight[t_ids].float()).to(table.dtype)
    table.requires_grad_(False)
    student.adapters = HiddenAdapters(n, config.hidden_size, t_cfg.hidden_size)
    model.train()
    return _described(student, teacher)


def _is_head(key: str) -> bool:
    return key.startswith(("classifier.", "score.", "pre_classifier."))


def _copy_matching(model: PreTrainedModel, teacher: PreTrainedModel, layers: list[int]) -> int:
    """Copy every teacher weight whose counterpart has the same shape; returns how many were copied."""
    t_state = teacher.state_dict()
    state = model.state_dict()
    copied = 0
    for key, value in state.items():
        src = teacher_key(key, layers)
        if src in t_state and t_state[src].shape == value.shape:
            state[key] = t_state[src].detach().clone()
            copied += 1
    model.load_state_dict(state)
    return copied


def _frozen_linear(weight: torch.Tensor, bias: torch.Tensor) -> nn.Linear:
    lin = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        lin.weight.copy_(weight)
        lin.bias.copy_(bias)
    return lin.requires_grad_(False)


def _principal_bridge(teacher: PreTrainedModel, width: int) -> nn.Linear:
    """``x -> (x - mean) P``: the teacher's word vectors on their top ``width`` principal directions."""
    E = teacher.get_input_embeddings().weight.detach().float()
    mean = E.mean(0)
    _, _, V = torch.linalg.svd(E - mean, full_matrices=False)
    P = V[:width]  # (width, d_teacher)
    return _frozen_linear(P, -(P @ mean))


def _project_embeddings(model: PreTrainedModel, teacher: PreTrainedModel, bridge: nn.Linear) -> None:
    """Word rows through the bridge; position and token-type rows through its directions alone."""
    s_emb, t_emb = model.base_model.embeddings, teacher.base_model.embeddings
    with torch.no_grad():
        s_emb.word_embeddings.weight.copy_(bridge(t_emb.word_embeddings.weight.float()))
        for name in ("position_embeddings", "token_type_embeddings"):
            s, t = getattr(s_emb, name, None), getattr(t_emb, name, None)
            if s is not None and t is not None and s.weight.shape[0] <= t.weight.shape[0]:
                s.weight.copy_(t.weight[: s.weight.shape[0]].float() @ bridge.weight.T)


def fit_bridge(teacher: PreTrainedModel, teacher_tokenizer, model: PreTrainedModel, tokenizer, spec: str = "") -> tuple:
    """(bridge, student ids, teacher ids, vocabulary report) for ``model``: the least-squares map from
    the teacher's word vectors to the student's over the word pieces they share. Refused when the
    two read different word pieces. For a saved student (whose shared rows are mapped teacher rows)
    it gives back the bridge it was trained through."""
    s_ids, t_ids, vocab = vocabulary_map(teacher_tokenizer, tokenizer, teacher.config.vocab_size, model.config.vocab_size)
    _check_reach(spec or type(model).__name__, vocab)
    return _fitted_bridge(teacher, model, s_ids, t_ids), s_ids, t_ids, vocab


def reads_teacher_space(model: PreTrainedModel, teacher: PreTrainedModel) -> bool:
    """Whether ``model``'s word embeddings are the teacher's own (a copied or same-width fresh student)."""
    a, b = model.get_input_embeddings().weight, teacher.get_input_embeddings().weight
    return a.shape == b.shape and bool(torch.equal(a.detach().cpu(), b.detach().cpu()))


def _fitted_bridge(teacher: PreTrainedModel, model: PreTrainedModel, s_ids: torch.Tensor, t_ids: torch.Tensor) -> nn.Linear:
    """Least squares ``E_t[t_ids] W + b ~ E_s[s_ids]`` over the shared word pieces."""
    X = teacher.get_input_embeddings().weight.detach()[t_ids].double()
    Y = model.get_input_embeddings().weight.detach()[s_ids].double()
    X1 = torch.cat([X, torch.ones(len(X), 1, dtype=X.dtype)], 1)
    sol = torch.linalg.lstsq(X1, Y).solution  # (d_t + 1, d_s)
    return _frozen_linear(sol[:-1].T.float(), sol[-1].float())


@torch.no_grad()
def _fit(bridge: nn.Linear, teacher, model=None, s_ids=None, t_ids=None, n: int = 2000) -> dict:
    """How well the bridge carries word pieces (before the student's rows are replaced): R^2 of the
    fit and the share of word pieces whose mapped vector's nearest student row is their own."""
    if model is None:
        return {"width": bridge.out_features, "explained_variance": _explained(teacher, bridge)}
    Y = model.get_input_embeddings().weight.detach().float()
    pred = bridge(teacher.get_input_embeddings().weight.detach()[t_ids].float())
    target = Y[s_ids]
    r2 = 1 - float(((pred - target) ** 2).sum() / ((target - target.mean(0)) ** 2).sum())
    pick = torch.linspace(0, len(s_ids) - 1, min(n, len(s_ids))).long()
    d = torch.cdist(pred[pick], Y)
    nearest = float((d.argmin(1) == s_ids[pick]).float().mean())
    return {"shared_rows": len(s_ids), "r2": round(r2, 4), "nearest_row_is_own": round(nearest, 4)}


def _explained(teacher, bridge: nn.Linear) -> float:
    E = teacher.get_input_embeddings().weight.detach().float()
    centred = E - E.mean(0)
    return round(float((bridge(E) ** 2).sum() / (centred**2).sum()), 4)


def vocabulary_map(teacher_tok, student_tok, teacher_vocab: int, student_vocab: int) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Student ids and the teacher ids of the same word pieces (by token string; special tokens by
    their role), with the overlap and how alike the two tokenizers cut probe texts."""
    t_vocab = {tok: i for tok, i in teacher_tok.get_vocab().items() if i < teacher_vocab}
    s_vocab = {tok: i for tok, i in student_tok.get_vocab().items() if i < student_vocab}
    pairs = {}
    for role in ("cls_token_id", "sep_token_id", "pad_token_id", "unk_token_id", "mask_token_id", "bos_token_id", "eos_token_id"):
        s, t = getattr(student_tok, role, None), getattr(teacher_tok, role, None)
        if s is not None and t is not None and s < student_vocab and t < teacher_vocab:
            pairs.setdefault(s, t)
    t_special = set(teacher_tok.all_special_ids)
    ordinary_t = {tok for tok, i in t_vocab.items() if i not in t_special and not re.fullmatch(r"\[.*\]|<.*>", tok)}
    shared = ordinary_t & set(s_vocab)
    for tok in shared:
        pairs.setdefault(s_vocab[tok], t_vocab[tok])
    s_ids = torch.tensor(sorted(pairs), dtype=torch.long)
    t_ids = torch.tensor([pairs[i] for i in s_ids.tolist()], dtype=torch.long)
    same = sum(teacher_tok.tokenize(p) == student_tok.tokenize(p) for p in PROBES)
    info = {
        "teacher_vocabulary": len(t_vocab),
        "student_vocabulary": len(s_vocab),
        "shared_word_pieces": len(shared),
        "teacher_coverage": round(len(shared) / max(len(ordinary_t), 1), 4),
        "same_segmentation": round(same / len(PROBES), 2),
        "id_shift": _shift(s_ids, t_ids),
    }
    return s_ids, t_ids, info


def _shift(s_ids: torch.Tensor, t_ids: torch.Tensor) -> int | None:
    """Student id minus teacher id, when 90% of the shared word pieces have one offset (MPNet's ids are BERT's + 4)."""
    if len(s_ids) == 0:
        return None
    values, counts = torch.unique(s_ids - t_ids, return_counts=True)
    top = int(counts.argmax())
    return int(values[top]) if counts[top] >= 0.9 * len(s_ids) else None


def _check_reach(spec: str, vocab: dict) -> None:
    """Pseudo samples are teacher word pieces or vectors near them: a student must read the same word
    pieces, cut the same way, for them to mean anything to it."""
    if vocab["teacher_coverage"] < MIN_COVERAGE or vocab["same_segmentation"] < MIN_SAME_SEGMENTATION:
        raise UserError(
            f"--student '{spec}' reads other word pieces than the teacher ({vocab['teacher_coverage']:.0%} of the teacher's in its "
            f"vocabulary, {vocab['same_segmentation']:.0%} of probe texts cut alike; needs {MIN_COVERAGE:.0%} and {MIN_SAME_SEGMENTATION:.0%}); "
            "choose a student with the teacher's tokenizer family, or a shape: --student layers=4,hidden=256"
        )


def _described(student: Student, teacher: PreTrainedModel) -> Student:
    m = student.model
    student.info.update(
        {
            "architecture": type(m).__name__,
            "layers": int(m.config.num_hidden_layers),
            "hidden_size": int(m.config.hidden_size),
            "parameters": sum(p.numel() for p in m.parameters()),
            "teacher_architecture": type(teacher).__name__,
            "teacher_parameters": sum(p.numel() for p in teacher.parameters()),
            "learns_from_teacher_layers": student.layer_map,
        }
    )
    return student
