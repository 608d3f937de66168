"""Training data: (anchor, positive[, negative]) pairs and (text1, text2, score) scored pairs.

Two plain dataclasses hold every kind of training data the package knows:

* :class:`PairData` for contrastive training (MultipleNegativesRankingLoss): an anchor, a positive, and optionally
  a hard negative per row;
* :class:`ScoredPairData` for similarity regression-by-ranking (CoSENT, AnglE): two texts and a score.

Readers build them from the shared benchmark files (STS Benchmark train, SICK train and its entailment labels,
same-label pairs from a labelled set) and from a user's own jsonl / csv / tsv file.
"""

from __future__ import annotations

import csv
import io
import json
import math
import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from st_pooling.data.errors import DataFormatError, require_files
from st_pooling.data.text_files import read_text, split_lines
from st_pooling.data.types import ClassificationData, STSData, check_texts, sample_indices

PAIR_COLUMNS = ("anchor", "positive", "negative")
SCORED_COLUMNS = ("text1", "text2", "score")
COLUMN_ALIASES = {"sentence1": "text1", "sentence2": "text2", "query": "anchor", "label": "score"}


@dataclass
class PairData:
    """Rows of (anchor, positive) or (anchor, positive, negative) texts for contrastive losses."""

    anchors: list[str]
    positives: list[str]
    negatives: list[str] | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if len(self.anchors) != len(self.positives):
            raise ValueError(f"PairData has {len(self.anchors)} anchors but {len(self.positives)} positives")
        if self.negatives is not None and len(self.negatives) != len(self.anchors):
            raise ValueError(f"PairData has {len(self.anchors)} anchors but {len(self.negatives)} negatives")
        if len(self.anchors) < 2:
            raise ValueError(f"PairData needs at least 2 rows (in-batch negatives), got {len(self.anchors)}")
        check_texts(self.anchors, "anchors", non_empty=True)
        check_texts(self.positives, "positives", non_empty=True)
        if self.negatives is not None:
            check_texts(self.negatives, "negatives", non_empty=True)

    def __len__(self) -> int:
        return len(self.anchors)

    @property
    def kind(self) -> str:
        return "triplets" if self.negatives is not None else "pairs"

    def columns(self) -> dict[str, list[str]]:
        """Column name -> texts, in the order the losses read them (anchor first)."""
        columns = {"anchor": self.anchors, "positive": self.positives}
        if self.negatives is not None:
            columns["negative"] = self.negatives
        return columns

    def texts(self) -> list[str]:
        """Every distinct text, in first-seen order."""
        return list(dict.fromkeys(text for column in self.columns().values() for text in column))

    def subset(self, n: int, seed: int = 0) -> PairData:
        """At most ``n`` rows drawn uniformly with ``seed``, in their original order."""
        keep = sample_indices(len(self), n, seed)
        negatives = None if self.negatives is None else [self.negatives[i] for i in keep]
        return PairData([self.anchors[i] for i in keep], [self.positives[i] for i in keep], negatives, self.source)

    def to_dataset(self) -> Any:
        """A ``datasets.Dataset`` with columns anchor, positive[, negative] (no label column)."""
        from datasets import Dataset

        return Dataset.from_dict(self.columns())


@dataclass
class ScoredPairData:
    """Rows of (text1, text2, score): a higher score means more similar (any scale; losses use the ranking)."""

    texts1: list[str]
    texts2: list[str]
    scores: list[float]
    source: str = ""

    def __post_init__(self) -> None:
        if not len(self.texts1) == len(self.texts2) == len(self.scores):
            raise ValueError(f"ScoredPairData needs one score per pair: got {len(self.texts1)} texts1, "
                             f"{len(self.texts2)} texts2, {len(self.scores)} scores")
        if len(self.scores) < 2:
            raise ValueError(f"ScoredPairData needs at least 2 rows, got {len(self.scores)}")
        check_texts(self.texts1, "texts1", non_empty=True)
        check_texts(self.texts2, "texts2", non_empty=True)
        for index, score in enumerate(self.scores):
            if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
                raise ValueError(f"scores[{index}] must be a finite number, got {score!r}")
        self.scores = [float(score) for score in self.scores]
        if len(set(self.scores)) < 2:
            raise ValueError("ScoredPairData needs at least two different scores to rank pairs by")

    def __len__(self) -> int:
        return len(self.scores)

    kind = "scored_pairs"

    def columns(self) -> dict[str, list[str]]:
        return {"sentence1": self.texts1, "sentence2": self.texts2}

    def texts(self) -> list[str]:
        return list(dict.fromkeys(self.texts1 + self.texts2))

    def subset(self, n: int, seed: int = 0) -> ScoredPairData:
        keep = sample_indices(len(self), n, seed)
        return ScoredPairData([self.texts1[i] for i in keep], [self.texts2[i] for i in keep],
                              [self.scores[i] for i in keep], self.source)

    def to_dataset(self) -> Any:
        """A ``datasets.Dataset`` with columns sentence1, sentence2, score (ST's collator reads 'score' as label)."""
        from datasets import Dataset

        return Dataset.from_dict({**self.columns(), "score": self.scores})

    @classmethod
    def from_sts(cls, data: STSData, source: str = "") -> ScoredPairData:
        return cls(list(data.sentences1), list(data.sentences2), list(data.scores), source)


TrainingData = PairData | ScoredPairData


# ----------------------------------------------------------------------------- the shared benchmark files


def stsb_scored_pairs(folder: str | Path, split: str = "train") -> ScoredPairData:
    """STS Benchmark ``sts-{split}.csv`` as scored pairs (0-5)."""
    from st_pooling.data import load_stsbenchmark

    return ScoredPairData.from_sts(load_stsbenchmark(folder, split=split), source=f"stsb-{split}")


def sick_scored_pairs(folder: str | Path, split: str = "train") -> ScoredPairData:
    """SICK relatedness (1-5) of the SemEval split ``split`` as scored pairs."""
    from st_pooling.data import load_sick

    return ScoredPairData.from_sts(load_sick(folder, split=split), source=f"sick-{split}")


SICK_FILE = "SICK_original_12col.txt"
SICK_SPLITS = {"train": "TRAIN", "trial": "TRIAL", "dev": "TRIAL", "test": "TEST"}
NLI_COLUMNS = ("sentence_A", "sentence_B", "entailment_label", "SemEval_set")
NLI_LABELS = {"ENTAILMENT", "CONTRADICTION", "NEUTRAL"}


def _read_sick_nli_rows(folder: str | Path, split: str) -> list[tuple[str, str, str]]:
    if split not in SICK_SPLITS:
        raise ValueError(f"SICK has no split {split!r}; choose one of {sorted(SICK_SPLITS)}")
    path = require_files(folder, [SICK_FILE], "SICK") / SICK_FILE
    lines = split_lines(read_text(path, ("utf-8", "latin-1")))
    header = lines[0].split("\t") if lines else []
    missing = [name for name in NLI_COLUMNS if name not in header]
    if missing:
        raise DataFormatError(path, f"the header lacks the column(s) {', '.join(missing)}; found {header}", 1)
    column = {name: header.index(name) for name in NLI_COLUMNS}
    rows = []
    for line_number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) != len(header):
            raise DataFormatError(path, f"expected {len(header)} tab-separated columns like the header, "
                                        f"found {len(cells)}", line_number)
        if cells[column["SemEval_set"]] != SICK_SPLITS[split]:
            continue
        label = cells[column["entailment_label"]].strip()
        if label not in NLI_LABELS:
            raise DataFormatError(path, f"expected an entailment_label in {sorted(NLI_LABELS)}, found {label!r}",
                                  line_number)
        rows.append((cells[column["sentence_A"]].strip(), cells[column["sentence_B"]].strip(), label))
    return rows


def sick_nli_pairs(folder: str | Path, split: str = "train", hard_negatives: bool = True) -> PairData:
    """NLI-style contrastive data from SICK's entailment labels.

    Each ENTAILMENT pair (A, B) becomes (anchor A, positive B). With ``hard_negatives``, only premises that also have a
    CONTRADICTION hypothesis are kept, and that hypothesis is the row's negative (cycled when a premise has several
    entailments), giving triplets; otherwise all entailment pairs are returned without negatives.
    """
    rows = _read_sick_nli_rows(folder, split)
    contradictions: dict[str, list[str]] = defaultdict(list)
    for premise, hypothesis, label in rows:
        if label == "CONTRADICTION":
            contradictions[premise].append(hypothesis)
    anchors, positives, negatives = [], [], []
    used: dict[str, int] = defaultdict(int)
    for premise, hypothesis, label in rows:
        if label != "ENTAILMENT":
            continue
        if hard_negatives:
            options = contradictions.get(premise)
            if not options:
                continue
            negatives.append(options[used[premise] % len(options)])
            used[premise] += 1
        anchors.append(premise)
        positives.append(hypothesis)
    return PairData(anchors, positives, negatives if hard_negatives else None,
                    source=f"sick-nli-{split}{'-hard' if hard_negatives else ''}")


def same_label_pairs(data: ClassificationData, max_pairs: int | None = None, hard_negatives: bool = False,
                     seed: int = 0) -> PairData:
    """(anchor, positive[, negative]) rows from a labelled set's train split: the positive shares the anchor's label.

    Each train text is an anchor once; its positive is another text of the same label, its negative (with
    ``hard_negatives``) a text of another label, both drawn with ``seed``. Labels with a single text are skipped.
    Note: with few labels, in-batch negatives often share the anchor's label (false negatives); larger label sets
    (Banking77's 77 intents) suffer less than small ones (20 Newsgroups' 20 groups).
    """
    rng = random.Random(seed)
    by_label: dict[object, list[int]] = defaultdict(list)
    for index, label in enumerate(data.train_labels):
        by_label[label].append(index)
    texts = data.train_texts
    anchors, positives, negatives = [], [], []
    for index, label in enumerate(data.train_labels):
        members = by_label[label]
        if len(members) < 2:
            continue
        partner = index
        while partner == index:
            partner = rng.choice(members)
        anchors.append(texts[index])
        positives.append(texts[partner])
        if hard_negatives:
            other = rng.randrange(len(texts))
            while data.train_labels[other] == label:
                other = rng.randrange(len(texts))
            negatives.append(texts[other])
    pairs = PairData(anchors, positives, negatives if hard_negatives else None, source="same-label")
    return pairs.subset(max_pairs, seed) if max_pairs else pairs


# ----------------------------------------------------------------------------- a user's own files


def _canonical(name: str) -> str:
    name = name.strip().lower()
    return COLUMN_ALIASES.get(name, name)


def _layout(path: Path, names: list[str], line: int) -> tuple[str, list[str]]:
    """Which kind of data a header (or jsonl keys) describes: 'pairs' / 'triplets' / 'scored_pairs'."""
    canonical = [_canonical(name) for name in names]
    if {"anchor", "positive"} <= set(canonical):
        wanted = ["anchor", "positive"] + (["negative"] if "negative" in canonical else [])
        return ("triplets" if "negative" in canonical else "pairs"), wanted
    if {"text1", "text2", "score"} <= set(canonical):
        return "scored_pairs", list(SCORED_COLUMNS)
    raise DataFormatError(path, "expected the columns (anchor, positive[, negative]) or (text1, text2, score) "
                                f"(aliases: sentence1/sentence2, query, label), found {names}", line)


def _build(path: Path, kind: str, rows: list[dict[str, Any]], lines: list[int]) -> TrainingData:
    if len(rows) < 2:
        raise DataFormatError(path, f"expected at least 2 rows of training data, found {len(rows)}")
    columns = ["anchor", "positive", "negative"][: 3 if kind == "triplets" else 2]
    if kind == "scored_pairs":
        columns = list(SCORED_COLUMNS)
    for row, line in zip(rows, lines):
        for column in columns:
            value = row.get(column)
            if column == "score":
                if isinstance(value, str):
                    try:
                        value = float(value)
                    except ValueError:
                        raise DataFormatError(path, f"expected a number in column 'score', found {value!r}",
                                              line) from None
                if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                    raise DataFormatError(path, f"expected a finite number in column 'score', found {value!r}", line)
                row[column] = float(value)
            elif not isinstance(value, str) or not value.strip():
                raise DataFormatError(path, f"expected a non-empty text in column {column!r}, found {value!r}", line)
    source = path.name
    if kind == "scored_pairs":
        return ScoredPairData([r["text1"] for r in rows], [r["text2"] for r in rows],
                              [r["score"] for r in rows], source)
    negatives = [r["negative"] for r in rows] if kind == "triplets" else None
    return PairData([r["anchor"] for r in rows], [r["positive"] for r in rows], negatives, source)


def _read_jsonl(path: Path) -> TrainingData:
    rows: list[dict[str, Any]] = []
    lines: list[int] = []
    kind, first_keys = None, None
    for line_number, line in enumerate(split_lines(read_text(path, ("utf-8",))), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataFormatError(path, f"invalid JSON ({error.msg} at column {error.colno})", line_number) from None
        if not isinstance(record, dict):
            raise DataFormatError(path, f"expected a JSON object per line, found {type(record).__name__}",
                                  line_number)
        record = {_canonical(key): value for key, value in record.items()}
        if kind is None:
            kind, _ = _layout(path, list(record), line_number)
            first_keys = sorted(record)
        elif kind == "pairs" and "negative" in record or kind == "triplets" and "negative" not in record:
            raise DataFormatError(path, f"every line must have the same columns as line {lines[0]} "
                                        f"({first_keys}); this one has {sorted(record)}", line_number)
        rows.append(record)
        lines.append(line_number)
    if kind is None:
        raise DataFormatError(path, "the file holds no rows")
    return _build(path, kind, rows, lines)


def _read_delimited(path: Path, delimiter: str) -> TrainingData:
    text = read_text(path, ("utf-8", "latin-1"))
    quoting: Literal[0, 1, 2, 3] = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting)
    header: list[str] | None = None
    rows: list[dict[str, Any]] = []
    lines: list[int] = []
    for row in reader:
        line = reader.line_num
        if not row or not any(cell.strip() for cell in row):
            continue
        if header is None:
            header = row
            kind, wanted = _layout(path, header, line)
            index = {_canonical(name): position for position, name in enumerate(header)}
            continue
        if len(row) != len(header):
            raise DataFormatError(path, f"expected {len(header)} {'tab' if delimiter == chr(9) else 'comma'}-"
                                        f"separated columns like the header {header}, found {len(row)}", line)
        rows.append({column: row[index[column]] for column in wanted})
        lines.append(line)
    if header is None:
        raise DataFormatError(path, "the file is empty; expected a header row naming the columns")
    return _build(path, kind, rows, lines)


def read_training_file(path: str | Path) -> TrainingData:
    """A user's training file: ``.jsonl`` (one object a line), ``.csv`` or ``.tsv`` (a header row names the columns).

    Columns (anchor, positive[, negative]) give :class:`PairData`; (text1, text2, score) give
    :class:`ScoredPairData`. Malformed rows raise :class:`~st_pooling.data.DataFormatError` naming the file, the line
    and what was expected.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"training file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return _read_jsonl(path)
    if suffix == ".csv":
        return _read_delimited(path, ",")
    if suffix == ".tsv":
        return _read_delimited(path, "\t")
    raise DataFormatError(path, f"unknown training file type {suffix!r}: expected .jsonl, .csv or .tsv")


# ----------------------------------------------------------------------------- names the CLI and recipes use


def _shared_folder(data_dir: str | Path | None, name: str) -> Path:
    from st_pooling.data import shared_data_dir

    root = Path(data_dir).expanduser() if data_dir else shared_data_dir()
    if root is None:
        raise FileNotFoundError(f"no data folder for {name!r}: pass data_dir (or --data-dir), or set "
                                "ST_POOLING_DATA_DIR to the folder holding stsbenchmark/, sick/, banking77/, ...")
    return root / name if (root / name).is_dir() else root


def _banking77(data_dir: str | Path | None, split: str) -> PairData:
    from st_pooling.data import load_banking77_classification

    return same_label_pairs(load_banking77_classification(_shared_folder(data_dir, "banking77")))


def _newsgroups(data_dir: str | Path | None, split: str) -> PairData:
    from st_pooling.data import load_20newsgroups_classification

    return same_label_pairs(load_20newsgroups_classification(_shared_folder(data_dir, "20newsgroups")))


TRAINING_SOURCES: dict[str, Callable[[str | Path | None, str], TrainingData]] = {
    "stsb": lambda data_dir, split: stsb_scored_pairs(_shared_folder(data_dir, "stsbenchmark"), split),
    "sick": lambda data_dir, split: sick_scored_pairs(_shared_folder(data_dir, "sick"), split),
    "sick-nli": lambda data_dir, split: sick_nli_pairs(_shared_folder(data_dir, "sick"), split),
    "banking77": _banking77,
    "20newsgroups": _newsgroups,
}
"""Named training sources: name -> reader(data_dir, split). Labelled sets give same-label pairs (train split)."""


def load_training_data(source: str | Path, data_dir: str | Path | None = None, split: str = "train") -> TrainingData:
    """A named source (``stsb``, ``sick``, ``sick-nli``, ``banking77``, ``20newsgroups``; ``name:split`` picks a
    split, e.g. ``stsb:dev``) or the path of a jsonl / csv / tsv file."""
    text = str(source)
    name, _, chosen = text.partition(":")
    if name in TRAINING_SOURCES:
        return TRAINING_SOURCES[name](data_dir, chosen or split)
    path = Path(text).expanduser()
    if path.suffix.lower() in (".jsonl", ".ndjson", ".csv", ".tsv") or path.exists():
        return read_training_file(path)
    raise ValueError(f"unknown training source {text!r}: use one of {', '.join(TRAINING_SOURCES)} (optionally "
                     "name:split) or the path of a .jsonl/.csv/.tsv file")
