"""Students that are not a copy of the teacher's layers: fresh shapes and foreign pretrained encoders."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import BertModel, BertTokenizerFast, pipeline

from asdfd.cli import main
from asdfd.models import load_teacher, load_tokenizer
from asdfd.student import HiddenAdapters, build, parse_shape, vocabulary_map

from .conftest import WORDS, tiny_config
from .test_cli import _distill_args
from .test_resume import STEPS, _same_student

SHIFT = ["<s>", "<pad>", "</s>", "<unk>"]  # an MPNet-style vocabulary: the teacher's word pieces, 4 ids later
NARROW = "layers=2,hidden=16,heads=2,intermediate=32"


def _shifted_tokenizer(folder: Path, words=WORDS) -> BertTokenizerFast:
    folder.mkdir(parents=True, exist_ok=True)
    vocab = [*SHIFT, "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[unused0]", *words, *(f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz")]
    return BertTokenizerFast(vocab={tok: i for i, tok in enumerate(vocab)}, do_lower_case=True)


@pytest.fixture
def foreign_dir(tmp_path: Path) -> Path:
    """A pretrained-style encoder without a head: 2 layers of width 24, its own vocabulary ids."""
    torch.manual_seed(1)
    folder = tmp_path / "foreign"
    tok = _shifted_tokenizer(folder)
    BertModel(tiny_config(hidden_size=24, num_hidden_layers=2, intermediate_size=48, vocab_size=len(tok))).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_a_shifted_vocabulary_maps_by_token_string(tiny_teacher_dir, tmp_path):
    teacher_tok = load_tokenizer(tiny_teacher_dir)
    student_tok = _shifted_tokenizer(tmp_path / "s")
    s_ids, t_ids, info = vocabulary_map(teacher_tok, student_tok, len(teacher_tok), len(student_tok))
    assert info["id_shift"] == 4 and info["teacher_coverage"] == 1.0 and info["same_segmentation"] == 1.0
    assert torch.equal(s_ids - t_ids, torch.full_like(s_ids, 4))
    assert student_tok.convert_ids_to_tokens(int(s_ids[t_ids == teacher_tok.cls_token_id])) == "[CLS]"


def test_adapters_project_each_layer_to_the_teachers_width():
    hidden = tuple(torch.randn(2, 5, 16) for _ in range(3))  # embeddings + 2 layers
    out = HiddenAdapters(2, 16, 32)(hidden)
    assert [h.shape[-1] for h in out] == [16, 32, 32]
    same = HiddenAdapters(2, 32, 32)
    h = tuple(torch.randn(2, 5, 32) for _ in range(3))
    assert all(torch.equal(a, b) for a, b in zip(same(h), h, strict=True))  # identity where the widths match


def test_a_foreign_student_reads_through_its_own_ids_what_it_was_trained_on(tiny_teacher_dir, foreign_dir):
    """The bridge during training and the saved student's own rows agree exactly on every shared word piece."""
    teacher, tok = load_teacher(tiny_teacher_dir), load_tokenizer(tiny_teacher_dir)
    s = build(str(foreign_dir), teacher, tok)
    assert s.layer_map == [1, 3] and s.info["vocabulary"]["id_shift"] == 4 and s.info["input_bridge"]["shared_rows"] > 60
    s.model.eval()
    t_ids = tok("what film is the best", return_tensors="pt")["input_ids"]
    s_ids = s.tokenizer("what film is the best", return_tensors="pt")["input_ids"]
    assert torch.equal(s_ids, t_ids + 4)
    s.attach()
    through_bridge = s.model(inputs_embeds=teacher.get_input_embeddings()(t_ids)).logits
    s.detach()
    assert torch.allclose(through_bridge, s.model(input_ids=s_ids).logits, atol=1e-5)


def test_shapes_are_checked():
    cfg = tiny_config()
    assert parse_shape("layers=2, hidden=16", cfg) == {"num_hidden_layers": 2, "hidden_size": 16}
    from asdfd.errors import UserError

    for bad, needle in [("layers=two", "is not one of"), ("depth=2", "is not one of"), ("hidden=30,heads=4", "multiple of heads")]:
        with pytest.raises(UserError, match=needle):
            parse_shape(bad, cfg)


@pytest.mark.parametrize("kind", ["narrow", "foreign"])
def test_other_students_distil_through_the_cli_and_load_in_a_pipeline(tiny_teacher_dir, foreign_dir, tmp_path, capsys, kind):
    spec = NARROW if kind == "narrow" else str(foreign_dir)
    out = tmp_path / "student"
    assert main([*_distill_args(tiny_teacher_dir, out, "--tensorboard", "false"), "--student", spec]) == 0
    said = capsys.readouterr().out
    report = json.loads((out / "distill_report.json").read_text())
    info = report["student"]
    width = 16 if kind == "narrow" else 24
    assert info["hidden_size"] == width and info["parameters"] < info["teacher_parameters"]
    assert f"x {width}" in said and "input_bridge" in info
    clf = pipeline("text-classification", model=str(out), tokenizer=str(out), device="cpu")
    assert clf("what film is the best")[0]["label"] in {"neg", "neu", "pos"}
    assert clf.model.config.hidden_size == width
    card = (out / "README.md").read_text()
    assert "BertForSequenceClassification" in card and "bridge" in card
    if kind == "foreign":  # it reads with its own tokenizer
        assert load_tokenizer(out).convert_ids_to_tokens(0) == "<s>"
    assert main(["evaluate", "--model", str(out), "--data", str(_csv(tmp_path)), "--teacher", str(tiny_teacher_dir)]) == 0
    assert main(["inspect", "--run", str(out), "--output", str(tmp_path / "seen"), "--n", "8"]) == 0


def _csv(tmp_path: Path) -> Path:
    path = tmp_path / "eval.csv"
    path.write_text("text,label\n" + "".join(f"{w} film is good,{lab}\n" for w, lab in zip(WORDS[:12], ["neg", "neu", "pos"] * 4, strict=True)))
    return path


def test_a_student_of_other_word_pieces_is_refused(tiny_teacher_dir, tmp_path, capsys):
    folder = tmp_path / "other"
    tok = _shifted_tokenizer(folder, words=[w[::-1] + "x" for w in WORDS])  # none of the teacher's words
    torch.manual_seed(2)
    BertModel(tiny_config(vocab_size=len(tok))).save_pretrained(folder)
    tok.save_pretrained(folder)
    out = tmp_path / "o"
    assert main([*_distill_args(tiny_teacher_dir, out), "--student", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "reads other word pieces than the teacher" in err[0] and "--student layers=" in err[0]
    assert not out.exists()
    assert main([*_distill_args(tiny_teacher_dir, out), "--student", str(tmp_path / "nowhere")]) == 2
    assert main([*_distill_args(tiny_teacher_dir, out), "--student", "layers=9"]) == 2
    assert "more than the teacher's 4" in capsys.readouterr().err


def test_a_foreign_student_resumes_to_the_same_student(tiny_teacher_dir, foreign_dir, tmp_path, monkeypatch):
    from .test_resume import _crash_at_step_7

    args = [*STEPS, "--student", str(foreign_dir)]
    whole, crashed = tmp_path / "whole", tmp_path / "crashed"
    assert main(_distill_args(tiny_teacher_dir, whole, *args)) == 0
    _crash_at_step_7(monkeypatch, _distill_args(tiny_teacher_dir, crashed, *args))
    assert main(_distill_args(tiny_teacher_dir, crashed, *args, "--resume")) == 0
    _same_student(whole, crashed)


def test_two_processes_with_a_narrow_student(tiny_teacher_dir, tmp_path):
    import os

    out = tmp_path / "dp"
    argv = [*_distill_args(tiny_teacher_dir, out), "--num-processes", "2", "--student", NARROW]
    res = subprocess.run(
        [sys.executable, "-m", "asdfd", *argv], env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0, res.stderr
    dp = json.loads((out / "distill_report.json").read_text())["data_parallel"]
    assert dp["student_sha256"][0] == dp["student_sha256"][1]


def test_the_old_flag_name_says_the_new_one(tiny_teacher_dir, tmp_path, capsys):
    assert main([*_distill_args(tiny_teacher_dir, tmp_path / "o"), "--student-layers", "2"]) == 2
    assert "--student-layers is now --student" in capsys.readouterr().err
