"""Other teacher families go through `asdfd distill` unchanged: MPNet (the paper-scale teacher's
architecture) and RoBERTa (byte-level BPE, <s>/</s> specials, positions offset by the pad id)."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import (
    MPNetConfig,
    MPNetForSequenceClassification,
    MPNetTokenizerFast,
    RobertaConfig,
    RobertaForSequenceClassification,
    RobertaTokenizerFast,
)

from asdfd.cli import main
from asdfd.models import TokenSpace, load_classifier, load_teacher, load_tokenizer

from .conftest import LABELS, WORDS
from .test_cli import _distill_args

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
COMMON = dict(
    hidden_size=32,
    num_hidden_layers=4,
    num_attention_heads=2,
    intermediate_size=64,
    num_labels=len(LABELS),
    id2label=dict(enumerate(LABELS)),
    label2id={n: i for i, n in enumerate(LABELS)},
    pad_token_id=1,
    bos_token_id=0,
    eos_token_id=2,
)


def _mpnet():
    vocab = SPECIALS + WORDS
    tok = MPNetTokenizerFast(vocab={t: i for i, t in enumerate(vocab)}, unk_token="<unk>")
    return MPNetForSequenceClassification(MPNetConfig(vocab_size=len(vocab), max_position_embeddings=34, **COMMON)), tok


def _roberta():
    vocab = SPECIALS + WORDS + ["\u0120" + w for w in WORDS]
    tok = RobertaTokenizerFast(vocab={t: i for i, t in enumerate(vocab)}, merges=[])
    return RobertaForSequenceClassification(RobertaConfig(vocab_size=len(vocab), max_position_embeddings=34, **COMMON)), tok


@pytest.mark.parametrize("family", [_mpnet, _roberta], ids=["mpnet", "roberta"])
def test_family_distils_unchanged(family, tmp_path):
    torch.manual_seed(0)
    model, tok = family()
    teacher_dir = tmp_path / "teacher"
    model.save_pretrained(teacher_dir, safe_serialization=True)
    tok.save_pretrained(teacher_dir)
    # max positions 34 minus RoBERTa/MPNet's pad offset (1 + 1) leaves 32, i.e. max_len 30
    space = TokenSpace.from_teacher(load_teacher(teacher_dir), load_tokenizer(teacher_dir))
    assert space.max_positions == 32 and (space.cls_id, space.sep_id, space.pad_id) == (0, 2, 1)
    assert not set(space.ordinary.tolist()) & {0, 1, 2, 3, 4}
    out = tmp_path / "student"
    assert main(_distill_args(teacher_dir, out, "--max-len", "30")) == 0
    student = load_classifier(out)
    teacher = load_teacher(teacher_dir)
    assert type(student) is type(teacher) and student.config.num_hidden_layers == 2
    assert json.loads((out / "distill_report.json").read_text())["student_layers"] == [1, 3]
    # the shared vocabulary space: frozen, identical to the teacher's
    assert torch.equal(student.get_input_embeddings().weight, teacher.get_input_embeddings().weight)
    with torch.no_grad():
        logits = student(**tok(["what is the city", "good film"], return_tensors="pt", padding=True)).logits
    assert logits.shape == (2, len(LABELS)) and torch.isfinite(logits).all()
    # a longer pseudo sample than the positions allow is refused with the limit in the message
    assert main(_distill_args(teacher_dir, tmp_path / "o", "--max-len", "31", "--quiet")) == 2
