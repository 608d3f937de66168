"""Loaders for sentence-pair similarity data: STS Benchmark and SICK."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from st_pooling.data.errors import DataFormatError, require_files
from st_pooling.data.text_files import parse_float, read_text, split_lines
from st_pooling.data.types import STSData

STSB_FILES = {"train": "sts-train.csv", "dev": "sts-dev.csv", "test": "sts-test.csv"}
SICK_FILE = "SICK_original_12col.txt"
SICK_SPLITS = {"train": "TRAIN", "trial": "TRIAL", "dev": "TRIAL", "test": "TEST"}
SICK_COLUMNS = ("sentence_A", "sentence_B", "relatedness_score", "SemEval_set")


def _check_split(split: str, known: dict[str, str], dataset: str) -> str:
    if split not in known:
        raise ValueError(f"{dataset} has no split {split!r}; choose one of {sorted(known)}")
    return known[split]


def load_stsbenchmark(path: str | Path, split: str = "test") -> STSData:
    """STS Benchmark (scores 0-5) from ``sts-{train,dev,test}.csv`` in the folder ``path``.

    The files are tab-separated without a header and must be read without quote handling (the
    sentences contain quote characters): genre, file, year, id, score, sentence 1, sentence 2, and
    on some rows two trailing source columns, which are ignored.
    """
    file_name = _check_split(split, STSB_FILES, "STS Benchmark")
    file_path = require_files(path, [file_name], "STS Benchmark") / file_name
    reader = csv.reader(io.StringIO(read_text(file_path, ("utf-8",))), delimiter="\t", quoting=csv.QUOTE_NONE)
    sentences1: list[str] = []
    sentences2: list[str] = []
    scores: list[float] = []
    for line_number, row in enumerate(reader, start=1):
        if not row:
            continue
        if len(row) < 7:
            raise DataFormatError(
                file_path,
                f"expected at least 7 tab-separated columns (genre, file, year, id, score, sentence1, "
                f"sentence2), found {len(row)}",
                line_number,
            )
        score = parse_float(row[4], file_path, line_number, "the similarity score (column 5)")
        if not 0.0 <= score <= 5.0:
            raise DataFormatError(file_path, f"similarity score {score} is outside 0-5", line_number)
        sentences1.append(row[5].strip())
        sentences2.append(row[6].strip())
        scores.append(score)
    if not scores:
        raise DataFormatError(file_path, "the file holds no sentence pairs")
    return STSData(sentences1, sentences2, scores, min_score=0.0, max_score=5.0)


def load_sick(path: str | Path, split: str = "test") -> STSData:
    """SICK relatedness (scores 1-5) from ``SICK_original_12col.txt`` in the folder ``path``.

    The file is tab-separated with a header; the split comes from its ``SemEval_set`` column
    (TRAIN / TRIAL / TEST; ``split="dev"`` is an alias of ``"trial"``). The sentences are the
    ``sentence_A`` / ``sentence_B`` columns (the SICK sentences, not the original captions).
    """
    wanted = _check_split(split, SICK_SPLITS, "SICK")
    file_path = require_files(path, [SICK_FILE], "SICK") / SICK_FILE
    lines = split_lines(read_text(file_path, ("utf-8", "latin-1")))
    if not lines:
        raise DataFormatError(file_path, "the file is empty")
    header = lines[0].split("\t")
    missing = [name for name in SICK_COLUMNS if name not in header]
    if missing:
        raise DataFormatError(
            file_path, f"the header lacks the column(s) {', '.join(missing)}; found {header}", 1
        )
    column = {name: header.index(name) for name in SICK_COLUMNS}
    sentences1: list[str] = []
    sentences2: list[str] = []
    scores: list[float] = []
    for line_number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) != len(header):
            raise DataFormatError(
                file_path,
                f"expected {len(header)} tab-separated columns like the header, found {len(cells)}",
                line_number,
            )
        if cells[column["SemEval_set"]] != wanted:
            continue
        score = parse_float(cells[column["relatedness_score"]], file_path, line_number, "relatedness_score")
        if not 1.0 <= score <= 5.0:
            raise DataFormatError(file_path, f"relatedness_score {score} is outside 1-5", line_number)
        sentences1.append(cells[column["sentence_A"]].strip())
        sentences2.append(cells[column["sentence_B"]].strip())
        scores.append(score)
    if not scores:
        raise DataFormatError(file_path, f"no pair has SemEval_set == {wanted!r}")
    return STSData(sentences1, sentences2, scores, min_score=1.0, max_score=5.0)
