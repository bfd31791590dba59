"""Run configurations: one dataclass per command, validated once, saved beside every output.

Each field carries its one-line help in its metadata: ``asdfd --help``, the YAML keys of
``--config`` and the README's options table (``options_table``) are all read from there. Checks
that depend on the method live with the method (``Synthesizer.check``); ``validate`` holds the
ones every run shares.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import UserError

# the commit that holds every explored, not adopted option (docs/EXPERIMENTS.md)
EXPERIMENTS_COMMIT = "a85bfe17bd967689a56f75bb9b1335166ddcec16"


def option(default: Any, help: str, main: bool = False) -> Any:
    """A config field with its help text; ``main`` puts it in the README's short options table."""
    return field(default=default, metadata={"help": help, "main": main})


def checked_precision(precision: str, device: str) -> str:
    """``precision`` checked, with ``auto`` resolved for ``device`` (bf16 where the hardware has it)."""
    if precision not in ("auto", "fp32", "bf16"):
        raise UserError(f"precision '{precision}' is not one of auto, fp32, bf16")
    if precision != "auto":
        return precision
    from .runtime import resolve_device, resolve_precision

    return resolve_precision("auto", resolve_device(device))


@dataclass
class DistillConfig:
    """Everything that defines a distillation run. Defaults are the package defaults.

    Budget: the student takes ``student_steps`` optimiser steps on batches of ``batch_size``;
    ``pseudo_samples`` samples are crafted in total, spread evenly over those steps, and kept in a
    replay pool of ``replay_size`` from which student batches are drawn.
    """

    # what runs, where
    method: str = option("lm-text", "how pseudo samples are made (see `asdfd methods`; as-dfd: the paper's method)", main=True)
    student: Any = option(
        3,
        "the student: a number of teacher layers to copy (evenly spaced) or their indices (0,2,5); a packaged encoder (minilm-l3, minilm); "
        "a folder of a Hugging Face encoder; or a fresh shape (layers=4,hidden=256,heads=4,intermediate=1024)",
        main=True,
    )
    seed: int = option(0, "seed for every random choice", main=True)
    device: str = option("auto", "auto | cpu | cuda", main=True)
    precision: str = option(
        "auto",
        "auto | fp32 | bf16: bf16 autocast for every forward pass (weights and losses stay fp32); auto = bf16 where the hardware has it",
        main=True,
    )
    num_processes: int = option(
        1, "data-parallel processes launched through accelerate (GPUs, or CPU processes over gloo); budgets stay global", main=True
    )
    allow_pickle: bool = option(False, "read a teacher's pytorch_model.bin (tensors only, weights_only=True) when it has no safetensors")
    checkpoint_every: int = option(100, "student steps between checkpoints in .OUTPUT.partial/ (0: only on Ctrl-C); --resume continues a killed run")
    tensorboard: bool = option(
        False, "write TensorBoard scalars (losses, learning rate, teacher confidence, agreement) into OUTPUT/tensorboard", main=True
    )

    # budget
    student_steps: int = option(600, "student optimiser steps", main=True)
    batch_size: int = option(32, "samples per optimiser step and per crafted batch", main=True)
    pseudo_samples: int = option(3072, "pseudo samples crafted in total over the run", main=True)
    heldout_samples: int = option(256, "fresh pseudo samples for the teacher-student agreement check")

    # pseudo sample shape: [CLS] z_1..z_L [SEP], L uniform in [min_len, max_len]
    min_len: int = option(8, "shortest pseudo sample, in tokens between [CLS] and [SEP]")
    max_len: int = option(24, "longest pseudo sample, in tokens between [CLS] and [SEP]")

    # as-dfd, stage 1: Plug & Play Embedding Guessing
    guess_steps: int = option(5, "K: embedding-guessing steps per crafted batch (as-dfd)", main=True)
    guess_lr: float = option(0.01, "Adam learning rate of the pseudo embeddings (as-dfd)")
    init_candidates: int = option(4, "random starts per pseudo sample; guessing starts from the one the teacher is least sure about (as-dfd)")
    lambda_norm: float = option(1.0, "weight of the penalty keeping pseudo-token norms in the real embeddings' range (as-dfd)")

    # as-dfd, stage 2: adversarial self-supervision
    ss_task: str = option("replaced", "self-supervised task: replaced (replaced-token detection) | none (as-dfd)", main=True)
    ss_ratio: float = option(0.15, "fraction of pseudo tokens the replaced-token task corrupts (as-dfd)")
    adv_steps: int = option(1, "adversarial steps per crafted batch, raising the student's self-supervised loss (as-dfd)", main=True)
    lambda_adv: float = option(1.0, "weight of the self-supervised loss in the adversarial steps (as-dfd)")
    lambda_ss: float = option(0.1, "weight of the self-supervised loss in the student objective (as-dfd)")

    # generator baselines (modified-zskt, modified-dafl)
    generator_steps: int = option(5, "generator updates per crafted batch (modified-zskt, modified-dafl)")
    generator_lr: float = option(1e-3, "Adam learning rate of the generator (modified-zskt, modified-dafl)")

    # lm-text: what goes into the language model's prompts besides the teacher's label names
    task_hint: str = option("", "lm-text: one line on what the task's texts are (e.g. 'movie review'), the genre in its prompts", main=True)

    # the task's data: read only by the data-driven references
    data: str = option("", "real-kd/finetune only: trec | mr | bbc or a data file/folder whose train split is used")
    text_column: str = option("text", "real-kd/finetune only: text column of a data file")
    label_column: str = option("label", "real-kd/finetune only: label column of a data file")

    # student objective and the batches it sees
    lr: float = option(5e-5, "learning rate (AdamW, linear warm-up and decay)", main=True)
    warmup: float = option(0.1, "fraction of steps spent warming up the learning rate")
    weight_decay: float = option(0.01, "AdamW weight decay")
    temperature: float = option(2.0, "KD temperature", main=True)
    lambda_hidden: float = option(1.0, "weight of hidden-state KD between copied layers (0: logits only)")
    grad_clip: float = option(1.0, "gradient-norm clipping")
    # None: the method's own default, filled in by asdfd.synthesizers.configure: as-dfd keeps only the newest
    # crafted batch, the other methods 4096; as-dfd and lm-text mix half of each student batch, the others none
    replay_size: int | None = option(None, "replay pool capacity, in samples (default: as-dfd the newest crafted batch, --batch-size; others 4096)")
    mix: float | None = option(
        None, "fraction of each student batch replaced by token-level mixtures of two pool samples (default: as-dfd and lm-text 0.5, others 0)"
    )

    def validate(self) -> DistillConfig:
        """The checks every run shares; the method's own are ``Synthesizer.check`` (run by
        ``asdfd.synthesizers.configure``, which also fills in the method's defaults)."""
        for name in ("student_steps", "batch_size", "pseudo_samples", "min_len", "max_len", "num_processes"):
            if getattr(self, name) <= 0:
                raise UserError(f"{name} must be a positive integer, got {getattr(self, name)}; pass a value >= 1")
        for name in ("heldout_samples", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise UserError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.replay_size is not None:
            if self.replay_size <= 0:
                raise UserError(f"replay_size must be a positive integer, got {self.replay_size}; pass a value >= 1")
            if self.replay_size < self.batch_size:
                raise UserError(f"replay_size {self.replay_size} is smaller than batch_size {self.batch_size}; raise replay_size")
        if self.mix is not None and not 0.0 <= self.mix <= 1.0:
            raise UserError(f"mix must be in [0, 1], got {self.mix}")
        if self.min_len > self.max_len:
            raise UserError(f"min_len {self.min_len} is larger than max_len {self.max_len}; pass min_len <= max_len")
        if self.lambda_hidden < 0:
            raise UserError(f"lambda_hidden must be >= 0, got {self.lambda_hidden}")
        if self.temperature <= 0:
            raise UserError(f"temperature must be > 0, got {self.temperature}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise UserError(f"device '{self.device}' is not one of auto, cpu, cuda")
        self.precision = checked_precision(self.precision, self.device)
        from .parallel import check_world

        check_world(self)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TeacherConfig:
    """Fine-tuning a base encoder into a classifier (the user's side of the story, for demos)."""

    base: str = option(
        "",
        "base encoder: a folder, a hub name in the Hugging Face cache, minilm (packaged all-MiniLM-L6-v2, the default) "
        "or mpnet (all-mpnet-base-v2; needs requirements-mpnet.txt)",
    )
    epochs: int = option(4, "training epochs (the best on validation is kept)")
    batch_size: int = option(32, "texts per optimiser step")
    lr: float = option(1e-4, "learning rate (AdamW, linear warm-up and decay)")
    warmup: float = option(0.1, "fraction of steps spent warming up the learning rate")
    weight_decay: float = option(0.01, "AdamW weight decay")
    max_length: int = option(0, "token limit per text (0: the dataset's default)")
    seed: int = option(0, "seed for every random choice")
    device: str = option("auto", "auto | cpu | cuda")
    # fp32 by default: a teacher then rebuilds alike on other machines (the benchmark's cells name their teacher)
    precision: str = option(
        "fp32", "fp32 | bf16 | auto: bf16 autocast for the forward passes (pays for large encoders with AMX); auto = bf16 where the hardware has it"
    )

    def validate(self) -> TeacherConfig:
        for name in ("epochs", "batch_size"):
            if getattr(self, name) <= 0:
                raise UserError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.lr <= 0:
            raise UserError(f"lr must be > 0, got {self.lr}")
        self.precision = checked_precision(self.precision, self.device)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


CONFIG_FILE = "config.yaml"  # the resolved config, written beside every output

# Options of earlier versions that were explored and not adopted (docs/EXPERIMENTS.md; they run at
# EXPERIMENTS_COMMIT), with the value that meant "off". A saved config holding one at that value
# ran what this version runs, so it is read without it; at another value it is refused.
RETIRED: dict[str, Any] = {
    "zipf": 0.0, "zipf_alphabet": "last", "vocab_base": "", "prior_scope": "all", "task_unigram": False, "topic": 0.0,
    "init_pick": "boundary", "start_text": "random", "soft_targets": 0.0, "class_prior": "uniform", "token_flips": 0,
    "restart": 0.0, "lexicon": 0.0, "hold": 0.0, "init_noise": 0.0, "confidence_stop": 1.0, "trajectory": False,
    "project": False, "lambda_diverse": 0.0, "soft_tokens": 0.0, "guess_drop": 0.0, "real_text": "as-is",
    "lambda_disagree": 0.0, "kd_objective": "kl", "lambda_attn": 0.0, "lambda_jac": 0.0, "ema": 0.0,
    "embedding_lr_scale": 1.0, "student_dropout": None, "replay_hardness": 1, "mix_kind": "tokens",
    "mix_partner": "random", "fresh_random": 0.0, "fresh_text": "random", "bridge": 0.0, "crop": 0.0,
}  # fmt: skip


def retired(shown: str) -> UserError:
    """The error for an option (shown as ``shown``) that was explored, not adopted, and removed."""
    return UserError(
        f"{shown} was an explored option that was not adopted and is no longer part of asdfd "
        f"(docs/EXPERIMENTS.md); drop it, or run it at commit {EXPERIMENTS_COMMIT[:10]}"
    )


RENAMED = {"student_layers": "student"}  # older name -> option (configs and checkpoints of earlier runs)


def drop_retired(values: dict[str, Any], source: str) -> dict[str, Any]:
    """``values`` under today's option names, without the retired options that hold their "off"
    value; a retired option set to anything else is refused with the commit that still runs it."""
    values = {RENAMED.get(k, k): v for k, v in values.items()}
    for key, value in values.items():
        if key in RETIRED and value != RETIRED[key]:
            raise retired(f"{source}: '{key}'")
    return {k: v for k, v in values.items() if k not in RETIRED}


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML mapping of option names (``student_steps`` or ``student-steps``) to values."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {path} does not exist; pass --config with a YAML file")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        where = getattr(e, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise UserError(f"config file {path} is not valid YAML{at}; fix the file or pass the options as flags") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise UserError(f"config file {path} must be a mapping of option: value, got a {type(values).__name__}")
    return drop_retired({str(k).replace("-", "_"): v for k, v in values.items()}, f"config file {path}")


def typed_value(key: str, value: Any, default: Any, source: str) -> Any:
    """``value`` as the option's type, or a one-line error naming the option. Ints are fine where
    floats are expected, and so are numeric strings: YAML reads ``1e-4`` (no dot) as a string."""
    if isinstance(default, float) and not isinstance(default, bool) and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if key == "student":
        ok = (
            (isinstance(value, int) and not isinstance(value, bool))
            or isinstance(value, str)
            or (isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value))
        )
        want = "a number of layers, a list of layer indices, a packaged encoder, a folder or a shape"
    elif isinstance(default, bool):
        ok, want = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, want = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif isinstance(default, float):
        ok, want = isinstance(value, int | float) and not isinstance(value, bool), "a number"
    elif isinstance(default, str) or default is None:
        ok, want = isinstance(value, str), "a string"
    else:  # pragma: no cover - every option has one of the types above
        ok, want = True, ""
    if not ok:
        raise UserError(f"{source}: '{key}' must be {want}, got {value!r}")
    return value


def save_config(values: dict[str, Any], folder: Path) -> None:
    """Write the resolved config; ``--config`` reads it back to repeat the run."""
    (folder / CONFIG_FILE).write_text(yaml.safe_dump(values, sort_keys=False))


def options_table(cls: type = DistillConfig, main_only: bool = True) -> str:
    """The markdown table of ``cls``'s options (the README's), from the fields' own help."""
    rows = ["| option | default | what it sets |", "|---|---|---|"]
    for f in dataclasses.fields(cls):
        if main_only and not f.metadata.get("main"):
            continue
        default = "method's own" if f.default is None else f"`{f.default}`"
        rows.append(f"| `--{f.name.replace('_', '-')}` | {default} | {f.metadata['help'].replace('|', '/')} |")
    return "\n".join(rows)
