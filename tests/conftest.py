"""Tiny random models built in-process: fast, and no assets needed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(2)

WORDS = (
    "what who where when why how is are the a of in to city river actor name year many much "
    "good bad great awful film movie plot story fun boring love hate best worst dull bright "
    "game team win lose market price stock bank vote party law phone chip web"
).split()
LABELS = ["neg", "neu", "pos"]


def write_tokenizer(folder: Path) -> BertTokenizerFast:
    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[unused0]"] + WORDS + [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"]
    return BertTokenizerFast(vocab={tok: i for i, tok in enumerate(vocab)}, do_lower_case=True)


# the tiny classifier shape every test family shares: 4 layers, hidden 32, the three LABELS
TINY_SHAPE = dict(
    hidden_size=32,
    num_hidden_layers=4,
    num_attention_heads=2,
    intermediate_size=64,
    num_labels=len(LABELS),
    id2label=dict(enumerate(LABELS)),
    label2id={n: i for i, n in enumerate(LABELS)},
)


def tiny_config(**kw) -> BertConfig:
    base = dict(
        **TINY_SHAPE,
        vocab_size=len(WORDS) + 6 + 26,
        max_position_embeddings=64,
        initializer_range=0.2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    base.update(kw)
    return BertConfig(**base)


@pytest.fixture
def tiny_teacher_dir(tmp_path: Path) -> Path:
    """A saved 4-layer, hidden-32 BERT classifier with a tokenizer, random weights (seeded)."""
    torch.manual_seed(0)
    folder = tmp_path / "teacher"
    tok = write_tokenizer(folder)
    model = BertForSequenceClassification(tiny_config())
    # make the classifier decisive so that confidence can move
    with torch.no_grad():
        model.classifier.weight.mul_(5)
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture
def tiny_lm(tmp_path, monkeypatch) -> Path:
    """A random 1-layer Llama on the tiny word-piece vocabulary, in place of the packaged LM."""
    from transformers import LlamaConfig, LlamaForCausalLM

    import asdfd.language_model as lm

    folder = tmp_path / "lm"
    tok = write_tokenizer(folder)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2)
    cfg.pad_token_id, cfg.bos_token_id, cfg.eos_token_id = tok.pad_token_id, tok.cls_token_id, tok.sep_token_id
    LlamaForCausalLM(cfg).save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    monkeypatch.setattr(lm, "packaged_lm", lambda cache_dir=None: folder)
    return folder


@pytest.fixture
def tiny_csv(tmp_path: Path) -> Path:
    import random

    rng = random.Random(0)
    rows = ["text,label"]
    for i in range(60):
        rows.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))) + f",{LABELS[i % 3]}")
    path = tmp_path / "data.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def tiny_distill_config(**kw):
    from asdfd.config import DistillConfig

    base = dict(
        method="as-dfd",  # the default, lm-text, needs a language model (the tiny_lm fixture)
        student=2,
        student_steps=6,
        batch_size=8,
        pseudo_samples=16,
        guess_steps=2,
        min_len=3,
        max_len=8,
        heldout_samples=8,
        replay_size=32,
        device="cpu",
        precision="fp32",  # the method's tests compare numbers; bf16 has its own tests
    )
    base.update(kw)
    return DistillConfig(**base)


def method_setup(teacher_dir, **kw):
    """(config resolved for its method, teacher, token space, 2-layer student) for synthesizer tests."""
    from asdfd.models import TokenSpace, build_student, evenly_spaced_layers, load_teacher, load_tokenizer
    from asdfd.synthesizers import configure

    cfg = configure(tiny_distill_config(**kw))
    teacher = load_teacher(teacher_dir)
    space = TokenSpace.from_teacher(teacher, load_tokenizer(teacher_dir))
    student = build_student(teacher, evenly_spaced_layers(4, 2))
    return cfg, teacher, space, student
