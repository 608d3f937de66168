"""Loaders for text classification data: SST-2, MR (movie review polarity) and Banking77."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from st_pooling.data.errors import DataFormatError, require_files
from st_pooling.data.splits import stratified_split
from st_pooling.data.text_files import parse_int, read_text, split_lines
from st_pooling.data.types import ClassificationData, ClusteringData, stratified_indices

NEGATIVE, POSITIVE = 0, 1
SST2_FILES = ["train.tsv", "test.tsv"]
MR_FILES = ["rt-polarity.pos", "rt-polarity.neg"]
BANKING77_FILES = ["train.csv", "test.csv", "categories.json"]


def _read_sst2_file(file_path: Path) -> tuple[list[str], list[int]]:
    lines = split_lines(read_text(file_path, ("utf-8",)))
    if not lines or lines[0].split("\t") != ["sentence", "label"]:
        found = lines[0] if lines else "an empty file"
        raise DataFormatError(file_path, f"expected the header 'sentence<TAB>label', found {found!r}", 1)
    texts: list[str] = []
    labels: list[int] = []
    for line_number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        sentence, tab, label_text = line.rpartition("\t")
        if not tab:
            raise DataFormatError(file_path, "expected 'sentence<TAB>label', found no tab", line_number)
        label = parse_int(label_text.strip(), file_path, line_number, "the label")
        if label not in (NEGATIVE, POSITIVE):
            raise DataFormatError(file_path, f"expected label 0 or 1, found {label}", line_number)
        texts.append(sentence.strip())
        labels.append(label)
    if not texts:
        raise DataFormatError(file_path, "the file holds no sentences")
    return texts, labels


def load_sst2(path: str | Path, max_train: int | None = None, seed: int = 0) -> ClassificationData:
    """SST-2 binary sentiment (0 = negative, 1 = positive) from ``train.tsv`` and ``test.tsv``.

    Both files have the header ``sentence<TAB>label``. ``max_train`` keeps at most that many train
    items (label proportions kept, drawn with ``seed``); the train file holds 60,614 phrases.
    """
    folder = require_files(path, SST2_FILES, "SST-2")
    train_texts, train_labels = _read_sst2_file(folder / "train.tsv")
    test_texts, test_labels = _read_sst2_file(folder / "test.tsv")
    if max_train is not None:
        if max_train < 1:
            raise ValueError(f"max_train must be a positive integer, got {max_train}")
        keep = stratified_indices(train_labels, max_train, seed)
        train_texts = [train_texts[i] for i in keep]
        train_labels = [train_labels[i] for i in keep]
    return ClassificationData(train_texts, train_labels, test_texts, test_labels)


def _read_sentence_lines(file_path: Path) -> list[str]:
    sentences = [line.strip() for line in split_lines(read_text(file_path, ("latin-1",)))]
    for line_number, sentence in enumerate(sentences, start=1):
        if not sentence:
            raise DataFormatError(file_path, "expected one sentence a line, found an empty line", line_number)
    if not sentences:
        raise DataFormatError(file_path, "the file holds no sentences")
    return sentences


def load_mr(path: str | Path, seed: int = 0, test_fraction: float = 0.2) -> ClassificationData:
    """MR movie-review polarity (0 = negative, 1 = positive) from ``rt-polarity.pos``/``.neg``.

    The files are latin-1, one sentence a line, with no official split: a stratified split with a
    fixed ``seed`` puts ``test_fraction`` of each class into the test split.
    """
    folder = require_files(path, MR_FILES, "MR")
    positive = _read_sentence_lines(folder / "rt-polarity.pos")
    negative = _read_sentence_lines(folder / "rt-polarity.neg")
    texts = positive + negative
    labels = [POSITIVE] * len(positive) + [NEGATIVE] * len(negative)
    return stratified_split(texts, labels, test_fraction, seed)


def _read_banking77_file(file_path: Path, categories: set[str]) -> tuple[list[str], list[str]]:
    rows = list(csv.reader(io.StringIO(read_text(file_path, ("utf-8",)), newline="")))
    if not rows or rows[0] != ["text", "category"]:
        found = rows[0] if rows else "an empty file"
        raise DataFormatError(file_path, f"expected the header 'text,category', found {found!r}", 1)
    texts: list[str] = []
    labels: list[str] = []
    for row_number, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != 2:
            raise DataFormatError(file_path, f"expected 2 columns (text, category), found {len(row)}", row_number)
        text, category = row
        if category not in categories:
            raise DataFormatError(
                file_path, f"category {category!r} is not one of the 77 in categories.json", row_number
            )
        texts.append(text.strip())
        labels.append(category)
    if not texts:
        raise DataFormatError(file_path, "the file holds no rows")
    return texts, labels


def _read_banking77_categories(file_path: Path) -> set[str]:
    try:
        categories = json.loads(read_text(file_path, ("utf-8",)))
    except json.JSONDecodeError as error:
        raise DataFormatError(file_path, f"invalid JSON ({error.msg})", error.lineno) from None
    if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
        raise DataFormatError(file_path, "expected a JSON list of category names")
    return set(categories)


def load_banking77_classification(path: str | Path) -> ClassificationData:
    """Banking77 intent classification (77 string labels) from ``train.csv`` and ``test.csv``."""
    folder = require_files(path, BANKING77_FILES, "Banking77")
    categories = _read_banking77_categories(folder / "categories.json")
    train_texts, train_labels = _read_banking77_file(folder / "train.csv", categories)
    test_texts, test_labels = _read_banking77_file(folder / "test.csv", categories)
    return ClassificationData(train_texts, train_labels, test_texts, test_labels)


def load_banking77_clustering(path: str | Path) -> ClusteringData:
    """Banking77 as clustering: the 3,080 test queries, their intent as the gold cluster."""
    folder = require_files(path, BANKING77_FILES, "Banking77")
    categories = _read_banking77_categories(folder / "categories.json")
    texts, labels = _read_banking77_file(folder / "test.csv", categories)
    return ClusteringData(texts, labels)
