"""The word pieces a fine-tuned teacher's training texts contained, read from its weights.

Fine-tuning with AdamW (decoupled weight decay) moves a word piece's embedding row only when that
word piece occurs in a training batch; every other row just shrinks by the weight decay factor
all rows share. Against the base model the teacher was fine-tuned from, the rows that moved are
the task's vocabulary: no text is read, only the two weight files (on the benchmark's teachers
the moved rows are exactly the word pieces of the train split, trec 7101 of 30522). It is the
same kind of prior as the batch-norm statistics image inversion reads from a teacher. It also
means that a fine-tuned model's weights tell which word pieces its training texts held; freeze
the word embeddings while fine-tuning where that matters.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open

from .assets import resolve_base
from .errors import UserError
from .models import _check_model_dir

# a row moved when its residual exceeds this share of its base norm: on the benchmark's teachers
# unmoved rows stay under 1.5e-5 (float rounding) and moved ones start at 1.5e-3
MOVED = 1e-4
KEY_SUFFIX = "embeddings.word_embeddings.weight"


def base_word_embeddings(base: str) -> torch.Tensor:
    """The word-embedding matrix of ``base`` (a model folder, or ``minilm`` / ``mpnet``), read
    from its safetensors alone (no model is built)."""
    folder = _check_model_dir(resolve_base(base))
    for file in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as f:
            keys = [k for k in f.keys() if k.endswith(KEY_SUFFIX)]
            if keys:
                return f.get_tensor(keys[0]).float()
    raise UserError(f"'{folder}' has no word-embedding matrix (*{KEY_SUFFIX}); pass the model the teacher was fine-tuned from")


def training_vocabulary(teacher_embeddings: torch.Tensor, base_embeddings: torch.Tensor) -> torch.Tensor:
    """A bool mask over the vocabulary: the rows fine-tuning moved (beyond the common decay)."""
    t, b = teacher_embeddings.detach().float().cpu(), base_embeddings.float().cpu()
    if t.shape != b.shape:
        raise UserError(
            f"the base model's word embeddings are {tuple(b.shape)}, the teacher's {tuple(t.shape)}; "
            "pass the model the teacher was fine-tuned from as --vocab-base"
        )
    # the factor every row that never met a gradient shrank by: the same for all of them, so the
    # most common ratio of a row to its base (to 1e-6), whatever share of the rows moved
    norm2 = (b * b).sum(1)
    ratio = (t * b).sum(1) / norm2.clamp_min(1e-12)
    decay = torch.mode(torch.round(ratio[norm2 > 0] * 1e6)).values / 1e6
    residual = (t - decay * b).norm(dim=1) / norm2.sqrt().clamp_min(1e-12)
    moved = residual > MOVED
    share = float(moved.float().mean())
    if share == 0:
        raise UserError("the teacher's word embeddings are its base's (frozen while fine-tuning?): they hold no vocabulary; drop --vocab-base")
    if share > 0.99:
        raise UserError(
            f"{share:.0%} of the teacher's word embeddings moved against this base: not its base, or not fine-tuned with "
            "decoupled weight decay (AdamW); drop --vocab-base or pass the right base model"
        )
    return moved
