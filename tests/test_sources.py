"""Models and data where users keep them: hub names in the Hugging Face cache (no network), and the
data formats people keep (TSV, Parquet, save_to_disk folders, folders of data files)."""

from __future__ import annotations

import json
import shutil

import pytest

from asdfd.cli import main
from asdfd.data import data_path

from .test_cli import _distill_args


@pytest.fixture(autouse=True)
def _datasets_cache(tmp_path, monkeypatch):
    """datasets' own cache of prepared folders in the test's folder, not the user's."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets-cache")


def _hub_cache(tmp_path, monkeypatch, name: str, folder, kind: str = "models") -> str:
    """``folder`` placed in a temporary Hugging Face hub cache under ``name``, in the hub's own layout."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-hub"
    repo = cache / f"{kind}--{name.replace('/', '--')}"
    revision = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(folder, repo / "snapshots" / revision)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return str(cache)


def test_a_teacher_by_hub_name_distils_and_evaluates(tiny_teacher_dir, tiny_csv, tmp_path, monkeypatch, capsys):
    _hub_cache(tmp_path, monkeypatch, "someone/tiny-classifier", tiny_teacher_dir)
    monkeypatch.chdir(tmp_path)  # no folder of that name here: the cache is where it is found
    out = tmp_path / "student"
    assert main(_distill_args("someone/tiny-classifier", out) + ["--quiet"]) == 0
    report = json.loads((out / "distill_report.json").read_text())
    assert report["teacher"] == "someone/tiny-classifier" and len(report["teacher_sha256"]) == 64
    capsys.readouterr()
    assert main(["evaluate", "--model", "someone/tiny-classifier", "--data", str(tiny_csv), "--json", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 60


def test_a_hub_name_follows_the_folder_rules_and_a_missing_one_names_the_cache(tiny_teacher_dir, tmp_path, monkeypatch, capsys):
    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_teacher_dir, pickled)
    for f in pickled.glob("*.safetensors"):
        f.unlink()
    (pickled / "pytorch_model.bin").write_bytes(b"not loaded")
    cache = _hub_cache(tmp_path, monkeypatch, "someone/pickled", pickled)
    monkeypatch.chdir(tmp_path)
    for name, needle in (("someone/pickled", "has no .safetensors weights"), ("someone/absent", f"Hugging Face cache ({cache})")):
        capsys.readouterr()
        assert main(_distill_args(name, tmp_path / "out") + ["--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["./someone", "/abs/path", "a b"])
def test_paths_are_never_taken_for_hub_names(name):
    from pathlib import Path

    from asdfd.assets import model_folder

    assert model_folder(name) == Path(name)


def _rows(n: int = 30) -> list[dict]:
    from .conftest import LABELS

    return [{"body": f"words number {i} here", "y": LABELS[i % 3]} for i in range(n)]


def _write(kind: str, folder) -> str:
    """The same 30 labelled rows in one of the formats people keep data in, written by their own tools."""
    import datasets

    rows = _rows()
    if kind == "tsv":
        path = folder / "d.tsv"
        path.write_text("body\ty\n" + "".join(f"{r['body']}\t{r['y']}\n" for r in rows))
    elif kind == "parquet":
        path = folder / "d.parquet"
        datasets.Dataset.from_list(rows).to_parquet(str(path))
    elif kind == "saved":  # one Dataset, labels as a ClassLabel column (ids on disk, names read back)
        path = folder / "saved"
        features = datasets.Features({"body": datasets.Value("string"), "y": datasets.ClassLabel(names=["neg", "neu", "pos"])})
        datasets.Dataset.from_list(rows, features=features).save_to_disk(str(path))
    elif kind == "files":  # a folder of data files, splits named by the files (as a hub dataset's repository)
        path = folder / "files"
        path.mkdir()
        ds = datasets.Dataset.from_list(rows)
        ds.select(range(20)).to_csv(str(path / "train.csv"), index=False)
        ds.select(range(20, 30)).to_csv(str(path / "test.csv"), index=False)
    else:  # a DatasetDict: the user's own splits
        path = folder / "saved-dict"
        ds = datasets.Dataset.from_list(rows)
        datasets.DatasetDict({"train": ds.select(range(20)), "test": ds.select(range(20, 30))}).save_to_disk(str(path))
    return str(path)


@pytest.mark.parametrize("kind", ["tsv", "parquet", "saved", "saved-dict", "files"])
def test_data_in_the_formats_people_keep_it(kind, tiny_teacher_dir, tmp_path, capsys):
    from asdfd.data import iter_file_chunks, load_dataset

    data = _write(kind, tmp_path)
    cols = ["--text-column", "body", "--label-column", "y"]
    assert main(["evaluate", "--model", str(tiny_teacher_dir), "--data", data, *cols, "--json", "--quiet"]) == 0
    res = json.loads(capsys.readouterr().out)
    own = kind in ("saved-dict", "files")
    assert res["n"] == (10 if own else 30)  # splits of its own: the test split; else every row
    chunks = list(iter_file_chunks(data, "body", "y", chunk=7, split="train" if own else None))
    assert [len(t) for t, _ in chunks] == ([7, 7, 6] if own else [7, 7, 7, 7, 2])  # read lazily, in chunks
    texts = [t for c, _ in chunks for t in c]
    labels = [lab for _, c in chunks for lab in c]
    assert texts[:2] == ["words number 0 here", "words number 1 here"] and labels[:3] == ["neg", "neu", "pos"]
    train = load_dataset(data, "train", "body", "y")
    assert len(train) == (20 if own else 21)  # the user's split, or the fixed 70% cut


def test_a_hub_dataset_by_name_from_the_cache(tiny_teacher_dir, tmp_path, monkeypatch, capsys):
    repo = tmp_path / "repo"
    shutil.copytree(_write("files", tmp_path), repo / "data")  # a hub dataset's repository: data/train.csv, data/test.csv
    cache = _hub_cache(tmp_path, monkeypatch, "someone/reviews", repo, kind="datasets")
    monkeypatch.chdir(tmp_path)
    cols = ["--text-column", "body", "--label-column", "y"]
    assert main(["evaluate", "--model", str(tiny_teacher_dir), "--data", "someone/reviews", *cols, "--json", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 10
    assert str(data_path("someone/reviews")).startswith(cache)  # found in the cache, not here


def test_bad_tables_and_folders_are_one_line_errors(tiny_teacher_dir, tmp_path, capsys):
    parquet, saved_dict = _write("parquet", tmp_path), _write("saved-dict", tmp_path)
    (tmp_path / "plain").mkdir()
    cases = [
        (["--data", parquet], "has no column 'text' (columns: body, y); pass --text-column"),
        (["--data", saved_dict, "--text-column", "body", "--label-column", "y", "--split", "validation"], "holds the splits train, test"),
        (["--data", str(tmp_path / "plain")], "neither a save_to_disk folder nor a folder of data files"),
        (["--data", "someone/absent-data"], "dataset 'someone/absent-data' does not exist as a folder or in the Hugging Face cache"),
    ]
    for args, needle in cases:
        capsys.readouterr()
        assert main(["evaluate", "--model", str(tiny_teacher_dir), *args, "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1, err
