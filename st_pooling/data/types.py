"""The plain data classes every part of st-pooling uses for evaluation data.

Each class validates itself on construction (raising ``ValueError`` with a message that says what
is wrong) and offers ``subset(n, seed=0)``: a deterministic, smaller copy for fast tests and the
command line's ``--max-items``.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

Label = str | int


def _check_positive_size(n: int) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"subset size must be a positive integer, got {n!r}")


def check_texts(texts: Sequence[object], what: str, non_empty: bool = False) -> None:
    """Raise a ValueError naming ``what[index]`` for the first item that is not a str (or is blank, if
    ``non_empty``)."""
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"{what}[{index}] must be a str, got {type(text).__name__}: {text!r}")
        if non_empty and not text.strip():
            raise ValueError(f"{what}[{index}] must be a non-empty str, got {text!r}")


def sample_indices(size: int, n: int, seed: int) -> list[int]:
    """``n`` distinct indices out of ``range(size)``, chosen with ``seed`` and returned in ascending order."""
    if n >= size:
        return list(range(size))
    return sorted(random.Random(seed).sample(range(size), n))


def stratified_indices(labels: Sequence[Hashable], n: int, seed: int) -> list[int]:
    """``n`` indices whose label proportions follow ``labels`` (ascending order, deterministic).

    Each label's items are shuffled with ``seed``; item k of a label with c items gets the key
    (k + 0.5) / c, and the n smallest keys are kept. So every label is represented in proportion
    to its frequency, and labels appear as soon as n allows it.
    """
    if n >= len(labels):
        return list(range(len(labels)))
    rng = random.Random(seed)
    by_label: dict[Hashable, list[int]] = defaultdict(list)
    for index, label in enumerate(labels):
        by_label[label].append(index)
    keyed: list[tuple[float, float, int]] = []
    for members in by_label.values():
        rng.shuffle(members)
        for rank, index in enumerate(members):
            keyed.append(((rank + 0.5) / len(members), rng.random(), index))
    keyed.sort()
    return sorted(index for _, _, index in keyed[:n])


@dataclass
class STSData:
    """Sentence pairs with a human similarity score on the scale [min_score, max_score]."""

    sentences1: list[str]
    sentences2: list[str]
    scores: list[float]
    min_score: float
    max_score: float

    def __post_init__(self) -> None:
        if not (len(self.sentences1) == len(self.sentences2) == len(self.scores)):
            raise ValueError(
                "STSData needs one score per sentence pair: got "
                f"{len(self.sentences1)} sentences1, {len(self.sentences2)} sentences2, {len(self.scores)} scores"
            )
        if not self.scores:
            raise ValueError("STSData is empty: give at least two scored sentence pairs")
        check_texts(self.sentences1, "sentences1")
        check_texts(self.sentences2, "sentences2")
        if not self.min_score < self.max_score:
            raise ValueError(f"min_score ({self.min_score}) must be below max_score ({self.max_score})")
        for index, score in enumerate(self.scores):
            if not isinstance(score, int | float) or not math.isfinite(score):
                raise ValueError(f"scores[{index}] must be a finite number, got {score!r}")
            if not self.min_score <= score <= self.max_score:
                raise ValueError(
                    f"scores[{index}] = {score} lies outside the declared scale "
                    f"[{self.min_score}, {self.max_score}]"
                )
        self.scores = [float(score) for score in self.scores]

    def __len__(self) -> int:
        return len(self.scores)

    def subset(self, n: int, seed: int = 0) -> STSData:
        """At most ``n`` pairs, drawn uniformly with ``seed``, in their original order."""
        _check_positive_size(n)
        keep = sample_indices(len(self), n, seed)
        return STSData(
            [self.sentences1[i] for i in keep],
            [self.sentences2[i] for i in keep],
            [self.scores[i] for i in keep],
            self.min_score,
            self.max_score,
        )


@dataclass
class ClassificationData:
    """Texts with class labels (str or int), split into train and test."""

    train_texts: list[str]
    train_labels: list[Label]
    test_texts: list[str]
    test_labels: list[Label]

    def __post_init__(self) -> None:
        for split, texts, labels in (
            ("train", self.train_texts, self.train_labels),
            ("test", self.test_texts, self.test_labels),
        ):
            if len(texts) != len(labels):
                raise ValueError(
                    f"ClassificationData {split} split has {len(texts)} texts but {len(labels)} labels"
                )
            if not texts:
                raise ValueError(f"ClassificationData {split} split is empty")
            check_texts(texts, f"{split}_texts")
            for index, label in enumerate(labels):
                if not isinstance(label, str | int) or isinstance(label, bool):
                    raise ValueError(f"{split}_labels[{index}] must be a str or int, got {label!r}")
        if len(set(self.train_labels)) < 2:
            raise ValueError(
                "ClassificationData needs at least two classes in the train split, "
                f"found {sorted(set(self.train_labels))}"
            )

    @property
    def label_names(self) -> list[Label]:
        """Every label of either split, sorted."""
        return sorted(set(self.train_labels) | set(self.test_labels), key=lambda label: (str(type(label)), label))

    def subset(self, n: int, seed: int = 0) -> ClassificationData:
        """At most ``n`` items of each split, label proportions kept (see :func:`stratified_indices`)."""
        _check_positive_size(n)
        train = stratified_indices(self.train_labels, n, seed)
        test = stratified_indices(self.test_labels, n, seed)
        return ClassificationData(
            [self.train_texts[i] for i in train],
            [self.train_labels[i] for i in train],
            [self.test_texts[i] for i in test],
            [self.test_labels[i] for i in test],
        )


@dataclass
class ClusteringData:
    """Texts with the gold cluster (category) of each."""

    texts: list[str]
    labels: list[str]

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise ValueError(f"ClusteringData has {len(self.texts)} texts but {len(self.labels)} labels")
        if not self.texts:
            raise ValueError("ClusteringData is empty")
        check_texts(self.texts, "texts")
        if len(set(self.labels)) < 2:
            raise ValueError(f"ClusteringData needs at least two clusters, found {sorted(set(self.labels))}")

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, n: int, seed: int = 0) -> ClusteringData:
        """At most ``n`` texts, cluster proportions kept (see :func:`stratified_indices`)."""
        _check_positive_size(n)
        keep = stratified_indices(self.labels, n, seed)
        return ClusteringData([self.texts[i] for i in keep], [self.labels[i] for i in keep])


@dataclass
class RetrievalData:
    """A corpus, queries and graded relevance judgments (qrels).

    ``qrels[query_id][doc_id]`` is an int gain: > 0 means relevant (higher is more relevant), 0 means
    judged not relevant. When ``ignore_identical_ids`` is true a document whose id equals the query id
    is never a candidate for that query (used when the queries are documents of the corpus itself).
    """

    corpus: dict[str, str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    ignore_identical_ids: bool = field(default=False)

    def __post_init__(self) -> None:
        if not self.corpus:
            raise ValueError("RetrievalData has an empty corpus")
        if not self.queries:
            raise ValueError("RetrievalData has no queries")
        for what, mapping in (("corpus", self.corpus), ("queries", self.queries)):
            for key, text in mapping.items():
                if not isinstance(key, str):
                    raise ValueError(f"{what} ids must be str, got {key!r}")
                if not isinstance(text, str):
                    raise ValueError(f"{what}[{key!r}] must be a str, got {type(text).__name__}")
        for query_id, judged in self.qrels.items():
            if query_id not in self.queries:
                raise ValueError(f"qrels refer to query {query_id!r}, which is not in queries")
            for doc_id, gain in judged.items():
                if doc_id not in self.corpus:
                    raise ValueError(f"qrels[{query_id!r}] refer to document {doc_id!r}, which is not in the corpus")
                if not isinstance(gain, int) or isinstance(gain, bool) or gain < 0:
                    raise ValueError(
                        f"qrels[{query_id!r}][{doc_id!r}] must be an int gain >= 0 (0 = not relevant), got {gain!r}"
                    )
        if not self.relevant_query_ids:
            raise ValueError("RetrievalData has no query with a relevant document (a gain > 0) in qrels")

    @property
    def relevant_query_ids(self) -> list[str]:
        """Ids of the queries that have at least one relevant document, in query order."""
        return [q for q in self.queries if any(gain > 0 for gain in self.qrels.get(q, {}).values())]

    def subset(self, n: int, seed: int = 0, docs_per_query: int = 10) -> RetrievalData:
        """At most ``n`` queries (among those with a relevant document) and a smaller corpus.

        The corpus keeps every document judged for a kept query, plus documents drawn with ``seed``
        from the rest until it holds ``n * docs_per_query`` documents (or the whole corpus).
        """
        _check_positive_size(n)
        _check_positive_size(docs_per_query)
        candidates = self.relevant_query_ids
        kept_queries = [candidates[i] for i in sample_indices(len(candidates), n, seed)]
        judged = {doc for q in kept_queries for doc in self.qrels[q]}
        others = [doc for doc in self.corpus if doc not in judged]
        room = max(0, n * docs_per_query - len(judged))
        distractors = {others[i] for i in sample_indices(len(others), room, seed)}
        keep_docs = judged | distractors
        return RetrievalData(
            corpus={doc: text for doc, text in self.corpus.items() if doc in keep_docs},
            queries={q: self.queries[q] for q in kept_queries},
            qrels={q: dict(self.qrels[q]) for q in kept_queries},
            ignore_identical_ids=self.ignore_identical_ids,
        )


EvaluationData = STSData | ClassificationData | ClusteringData | RetrievalData
