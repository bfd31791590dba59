"""``lm-text``: pseudo text from a language model, on a tiny random LM (the packaged one: one integration test)."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import pipeline

from asdfd.cli import main
from asdfd.synthesizers.lm_text import LMText, clean, label_names

from .conftest import LABELS, method_setup, tiny_config, write_tokenizer


def test_label_names_keep_words_and_drop_bare_ids():
    assert label_names({0: "sports", 1: "LABEL_1", 2: "Sci_Tech", 3: "class 3", 4: "7", 5: "ABBR"}) == [
        "sports",
        None,
        "Sci Tech",
        None,
        None,
        "ABBR",
    ]
    assert clean('  \n"What is the capital of France?"\nSure, here is another.') == "What is the capital of France?"


def test_prompts_name_the_target_class_and_the_hint(tiny_teacher_dir, tiny_lm):
    cfg, teacher, space, student = method_setup(tiny_teacher_dir, method="lm-text")
    synth = LMText(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(0))
    prompts = synth.instructions(torch.tensor([0, 1, 2]))
    assert [p.split(" about ")[1] for p in prompts] == [f"{n}." for n in LABELS]
    cfg.task_hint = "movie review"
    assert synth.instructions(torch.tensor([2]))[0] == "Write one movie review about pos."
    synth.names = [None, None, None]  # labels without words
    assert synth.instructions(torch.tensor([0])) == ["Write one movie review."]


def test_written_texts_become_pool_samples_labelled_by_the_teacher(tiny_teacher_dir, tiny_lm):
    cfg, teacher, space, student = method_setup(tiny_teacher_dir, method="lm-text")
    synth = LMText(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(0))
    batch = synth.craft(12, student)
    assert batch.embeds.shape[:2] == (12, cfg.max_len + 2) and (batch.attention_mask.sum(1) <= cfg.max_len + 2).all()
    assert torch.bincount(batch.targets, minlength=3).tolist() == [4, 4, 4]  # the prompts' classes, balanced
    tokens = batch.embeds[batch.slot]
    assert torch.equal(space.embeddings[space.nearest(tokens)], tokens)  # real word pieces of the teacher's vocabulary
    with torch.no_grad():
        again = teacher(inputs_embeds=batch.embeds, attention_mask=batch.attention_mask).logits
    torch.testing.assert_close(batch.teacher_logits, again)
    assert synth.stats()["language_model"]["label_names_in_prompts"] == {"0": "neg", "1": "neu", "2": "pos"}
    # the method's own pool: draws alike from the teacher's classes, half of each student batch mixtures
    assert synth.pool.balanced and cfg.mix == 0.5


@pytest.mark.parametrize("wordless", [False, True], ids=["label-names", "LABEL_i"])
def test_lm_text_distils_through_the_cli_and_says_so_on_the_card(tmp_path, tiny_lm, wordless):
    from transformers import BertForSequenceClassification

    teacher_dir = tmp_path / "teacher"
    tok = write_tokenizer(teacher_dir)
    names = [f"LABEL_{i}" for i in range(3)] if wordless else LABELS
    torch.manual_seed(0)
    BertForSequenceClassification(tiny_config(id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})).save_pretrained(
        teacher_dir
    )
    tok.save_pretrained(teacher_dir)
    out = tmp_path / "student"
    argv = ["distill", "--teacher", str(teacher_dir), "--output", str(out), "--student", "2"]  # lm-text: the default method
    argv += ["--student-steps", "4", "--batch-size", "4", "--pseudo-samples", "8", "--max-len", "8", "--heldout-samples", "4"]
    assert main([*argv, "--device", "cpu", "--task-hint", "movie review", "--quiet"]) == 0
    report = json.loads((out / "distill_report.json").read_text())
    assert report["config"]["method"] == "lm-text" and report["real_data_used"] is False and report["general_text_used"] is False
    lm = report["synthesis"]["language_model"]
    assert lm["task_hint"] == "movie review" and len(lm["example_texts"]) == 8
    assert lm["label_names_in_prompts"] == ({"0": None, "1": None, "2": None} if wordless else {"0": "neg", "1": "neu", "2": "pos"})
    card = (out / "README.md").read_text()
    assert "written by the general-purpose language model" in card and "'movie review'" in card and "data-free" in card.split("---")[1]
    assert ("labels carry no words" in card) == wordless
    assert pipeline("text-classification", model=str(out), device="cpu")("good film")[0]["label"] in names


def test_the_fused_sampling_filter_keeps_what_the_three_warpers_keep():
    from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    from asdfd.language_model import TopKTopP

    torch.manual_seed(0)
    scores = torch.randn(16, 300) * 3
    expected = scores
    for warper in (TemperatureLogitsWarper(0.9), TopKLogitsWarper(50), TopPLogitsWarper(0.95)):
        expected = warper(None, expected)
    got = TopKTopP(temperature=0.9, k=50, p=0.95)(None, scores)
    assert torch.equal(torch.isinf(got), torch.isinf(expected)) and torch.allclose(got[~torch.isinf(got)], expected[~torch.isinf(expected)])
    assert (~torch.isinf(got)).sum(-1).min() >= 1


def test_the_writer_draws_what_generate_draws_without_its_shortcuts(tiny_lm):
    """The shared opening's cache and the fused filter change the cost, not the texts: the same
    seed gives what a plain left-padded ``generate`` with its own warpers writes."""
    from asdfd.language_model import FirstLineDone, TextWriter, shared_length

    writer = TextWriter(tiny_lm, torch.device("cpu"), "fp32")
    prompts = ["what is the name of the city", "what is the river", "what is the best film of the year", "what is the"]
    torch.manual_seed(3)
    texts = writer.write(prompts, 10)
    assert len(writer.prefixes) == 1 and len(next(iter(writer.prefixes))) == 2  # "what is": "what is the" keeps its last token
    enc = writer.tokenizer([writer.prompt(p) for p in prompts], return_tensors="pt", padding=True, add_special_tokens=False)
    torch.manual_seed(3)
    out = writer.model.generate(
        input_ids=enc["input_ids"],
        attention_mask=enc["attention_mask"],
        max_new_tokens=10,
        do_sample=True,
        temperature=0.9,
        top_k=50,
        top_p=0.95,
        repetition_penalty=1.2,
        pad_token_id=writer.tokenizer.pad_token_id,
        stopping_criteria=[FirstLineDone(writer.newline, enc["input_ids"].shape[1])],
    )
    assert texts == writer.tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    assert any(t.strip() for t in texts)
    assert shared_length([[1, 2, 3], [1, 2, 3]]) == 2 and shared_length([[1, 2], [3]]) == 0  # each prompt keeps a token of its own


def test_a_task_hint_is_one_short_line(tiny_teacher_dir):
    from asdfd.errors import UserError
    from asdfd.synthesizers import configure

    from .conftest import tiny_distill_config

    with pytest.raises(UserError, match="one short line"):
        configure(tiny_distill_config(method="lm-text", task_hint="movie\nreviews"))


@pytest.mark.integration
def test_the_packaged_language_model_converts_once_and_writes(tmp_path):
    import asdfd.language_model as lm

    folder = lm.packaged_lm(tmp_path)
    card = json.loads((folder / lm.PROVENANCE).read_text())
    assert card["name"] == "SmolLM2-135M-Instruct" and card["licence"] == "Apache-2.0" and len(card["gguf_sha256"]) == 64
    assert lm.packaged_lm(tmp_path) == folder  # the second call reuses the folder
    torch.manual_seed(0)
    texts = lm.TextWriter(folder, torch.device("cpu"), "fp32").write(["Write one question about a city.", "Write one sentence."], 12)
    assert len(texts) == 2 and all(isinstance(t, str) and t.strip() for t in texts)


def test_the_lm_writes_several_batches_per_call_and_hands_them_out_in_turn(tiny_teacher_dir, tiny_lm, monkeypatch):
    cfg, teacher, space, student = method_setup(tiny_teacher_dir, method="lm-text")
    synth = LMText(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(0))
    monkeypatch.setattr(synth, "WRITE_AHEAD", 36)
    calls = []
    real = synth.writer.write
    monkeypatch.setattr(synth.writer, "write", lambda prompts, n: calls.append(len(prompts)) or real(prompts, n))
    written = []
    for _ in range(4):
        ahead = [text for text, _ in synth.unserved]
        batch = synth.craft(12, student)
        assert torch.bincount(batch.targets, minlength=3).tolist() == [4, 4, 4]  # each batch aimed alike at every class
        written.append(ahead)
    assert calls == [36, 36]  # three batches' worth per call, the fourth batch starts a second call
    assert [len(w) for w in written] == [0, 24, 12, 0] and written[2] == written[1][12:]  # handed out in the order written


def test_a_resumed_run_keeps_the_reports_example_texts_and_the_texts_written_ahead(tiny_teacher_dir, tiny_lm):
    cfg, teacher, space, student = method_setup(tiny_teacher_dir, method="lm-text")
    synth = LMText(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(0))
    synth.synthesize(student)
    assert synth.unserved  # written in one call with later batches
    again = LMText(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(0))
    again.load_state_dict(synth.state_dict())
    assert again.examples == synth.examples and len(again.examples) == 8 and again.n_crafted == synth.n_crafted
    assert again.unserved == synth.unserved


def test_kept_texts_are_those_the_teacher_finds_most_of_their_prompts_class(tiny_teacher_dir, tiny_lm):
    cfg, teacher, space, student = method_setup(tiny_teacher_dir, method="lm-text")
    cfg.lm_keep = 0.5
    synth = LMText(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(0))
    kept = synth.write(2, 6)
    assert len(kept) == 12
