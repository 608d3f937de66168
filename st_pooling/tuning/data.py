"""What ``st-pooling tune`` trains on, selects on and tests on: fixed, seeded splits of the shared benchmark data.

Data hygiene (docs/tuning.md):

* training mixture: STS-B train and SICK train (scored pairs, CoSENT), SICK train entailment triplets (MNRL), same-label
  pairs with a different-label hard negative (MNRL) from the *train shares* of Banking77 train, SST-2 train and
  20 Newsgroups train, and (query, relevant document) pairs (MNRL) of the *train share* of Cranfield's and CISI's
  queries;
* dev suite (model selection and the never-worse rule): STS-B dev; the *dev shares* held out of Banking77 train and
  SST-2 train (classification); the dev share of 20 Newsgroups train (clustering); the *dev share* of Cranfield's
  and CISI's queries (retrieval);
* test (the final comparison): the local tasks' own test splits, and only the *test share* of the IR queries
  (:class:`LocalCranfieldTestShare`, :class:`LocalCISITestShare`; LocalCranfield / LocalCISI still score all queries).

Every split is a function of ``split_seed`` only, so training, dev and test always agree on it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from st_pooling.data import (ClassificationData, RetrievalData, load_20newsgroups_classification,
                             load_banking77_classification, load_cisi, load_cranfield, load_sst2)
from st_pooling.data.splits import stratified_split
from st_pooling.evaluation.item_scores import ItemScores, mean_item_scores, retrieval_item_scores, sts_item_scores
from st_pooling.evaluation.local_tasks import local_task_metadata
from st_pooling.evaluation.tasks import LocalCISI, LocalCranfield, get_task
from st_pooling.training.data import (PairData, ScoredPairData, TrainingData, _shared_folder, same_label_pairs,
                                      sick_nli_pairs, sick_scored_pairs, stsb_scored_pairs)
from st_pooling.tuning.defaults import DEFAULT_WEIGHTS

IR_FRACTIONS = (0.4, 0.2, 0.4)
"""Shares of each IR collection's judged queries for train / dev / test."""
DEV_FRACTION = 0.1
"""Share of each labelled train set (Banking77, SST-2, 20 Newsgroups) held out as its dev share."""
SST2_POOL = 10000
"""SST-2 train phrases read (stratified, seeded) before splitting: its 60,614 phrases are far more than needed."""

SOURCE_TYPES = {"stsb": "STS", "sick": "STS", "sick-nli": "STS", "banking77": "Classification",
                "sst2": "Classification", "20newsgroups": "Clustering", "cranfield": "Retrieval",
                "cisi": "Retrieval"}
TASK_TYPES = ("STS", "Classification", "Clustering", "Retrieval")

# ----------------------------------------------------------------------------- the splits


def ir_query_split(data: RetrievalData, seed: int = 0,
                   fractions: Sequence[float] = IR_FRACTIONS) -> dict[str, list[str]]:
    """The judged queries of ``data`` split into 'train' / 'dev' / 'test' shares (seeded shuffle, disjoint)."""
    if len(fractions) != 3 or any(f <= 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"IR fractions must be three positive shares summing to 1, got {fractions}")
    queries = sorted(data.relevant_query_ids)
    random.Random(seed).shuffle(queries)
    n_train = round(fractions[0] * len(queries))
    n_dev = round(fractions[1] * len(queries))
    return {"train": queries[:n_train], "dev": queries[n_train:n_train + n_dev], "test": queries[n_train + n_dev:]}


def query_share(data: RetrievalData, share: str, seed: int = 0, fractions: Sequence[float] = IR_FRACTIONS,
                max_distractors: int | None = None) -> RetrievalData:
    """``data`` with only the queries of one share; the corpus is kept whole (``max_distractors``: keep only the
    documents judged for these queries plus that many others, drawn with ``seed``)."""
    ids = ir_query_split(data, seed, fractions)[share]
    corpus = data.corpus
    if max_distractors is not None:
        judged = {doc for q in ids for doc in data.qrels.get(q, {})}
        others = sorted(doc for doc in corpus if doc not in judged)
        keep = judged | set(random.Random(seed).sample(others, min(max_distractors, len(others))))
        corpus = {doc: text for doc, text in corpus.items() if doc in keep}
    return RetrievalData(corpus, {q: data.queries[q] for q in ids}, {q: dict(data.qrels[q]) for q in ids},
                         data.ignore_identical_ids)


def train_dev_split(data: ClassificationData, seed: int = 0,
                    dev_fraction: float = DEV_FRACTION) -> tuple[ClassificationData, ClassificationData]:
    """(train share, dev share) of ``data``'s train split, each as ClassificationData(train=texts, test=texts) —
    stratified by label; a train-share text equal to a dev-share text is dropped, so no text is in both."""
    split = stratified_split(data.train_texts, data.train_labels, dev_fraction, seed)
    dev_texts = set(split.test_texts)
    keep = [i for i, text in enumerate(split.train_texts) if text not in dev_texts]
    train_texts = [split.train_texts[i] for i in keep]
    train_labels = [split.train_labels[i] for i in keep]
    train = ClassificationData(train_texts, train_labels, train_texts, train_labels)
    dev = ClassificationData(split.test_texts, split.test_labels, split.test_texts, split.test_labels)
    return train, dev


@dataclass
class TuneSplits:
    """Every split tune reads, loaded once (see the module docstring)."""

    data_dir: str | None
    seed: int
    labelled: dict[str, tuple[ClassificationData, ClassificationData]]  # name -> (train share, dev share)
    ir: dict[str, RetrievalData]  # name -> the whole collection
    ir_fractions: tuple[float, float, float] = IR_FRACTIONS

    def ir_share(self, name: str, share: str, max_distractors: int | None = None) -> RetrievalData:
        return query_share(self.ir[name], share, self.seed, self.ir_fractions, max_distractors)


def load_splits(data_dir: str | Path | None = None, seed: int = 0, dev_fraction: float = DEV_FRACTION,
                ir_fractions: Sequence[float] = IR_FRACTIONS, sources: Sequence[str] | None = None) -> TuneSplits:
    """Read the labelled sets and IR collections that ``sources`` (default: all) need, and split them."""
    wanted = set(sources or DEFAULT_WEIGHTS) | {"banking77", "sst2", "20newsgroups", "cranfield", "cisi"}
    loaders: dict[str, Callable[[], ClassificationData]] = {
        "banking77": lambda: load_banking77_classification(_shared_folder(data_dir, "banking77")),
        "sst2": lambda: load_sst2(_shared_folder(data_dir, "sst2"), max_train=SST2_POOL, seed=seed),
        "20newsgroups": lambda: load_20newsgroups_classification(_shared_folder(data_dir, "20newsgroups")),
    }
    labelled = {name: train_dev_split(load(), seed, dev_fraction) for name, load in loaders.items() if name in wanted}
    ir = {"cranfield": load_cranfield(_shared_folder(data_dir, "cranfield")),
          "cisi": load_cisi(_shared_folder(data_dir, "cisi"))}
    return TuneSplits(None if data_dir is None else str(data_dir), seed, labelled, ir, tuple(ir_fractions))


# ----------------------------------------------------------------------------- the training mixture


@dataclass
class Source:
    """One training source: its rows, its loss ('cosent' for scored pairs, 'mnrl' for pairs / triplets), its
    sampling weight and the task type it trains for."""

    name: str
    data: TrainingData
    loss: str
    weight: float
    task_type: str


@dataclass
class Mixture:
    """Training sources; each batch comes from one source, drawn with probability proportional to its weight."""

    sources: list[Source]

    def __post_init__(self) -> None:
        if not self.sources:
            raise ValueError("the training mixture has no sources")
        if any(not source.weight > 0 for source in self.sources):
            raise ValueError("every source's weight must be > 0 (leave a source out instead)")

    @property
    def probabilities(self) -> dict[str, float]:
        total = sum(source.weight for source in self.sources)
        return {source.name: source.weight / total for source in self.sources}

    def draw(self, rng: random.Random) -> Source:
        return rng.choices(self.sources, weights=[source.weight for source in self.sources])[0]

    def texts(self) -> list[str]:
        return list(dict.fromkeys(text for source in self.sources for text in source.data.texts()))

    def summary(self) -> dict[str, dict[str, object]]:
        return {s.name: {"rows": len(s.data), "kind": s.data.kind, "loss": s.loss, "weight": s.weight,
                         "probability": round(self.probabilities[s.name], 4), "type": s.task_type}
                for s in self.sources}


def ir_pairs(data: RetrievalData, name: str) -> PairData:
    """(query, relevant document) rows, one per judged-relevant document of each query of ``data``."""
    anchors, positives = [], []
    for query_id, judged in data.qrels.items():
        for doc_id, gain in judged.items():
            if gain > 0 and data.corpus[doc_id].strip():
                anchors.append(data.queries[query_id])
                positives.append(data.corpus[doc_id])
    return PairData(anchors, positives, source=f"{name}-train-queries")


def source_data(name: str, splits: TuneSplits) -> TrainingData:
    """The training rows of source ``name`` (only training splits / train shares)."""
    folder = splits.data_dir
    if name == "stsb":
        return stsb_scored_pairs(_shared_folder(folder, "stsbenchmark"), "train")
    if name == "sick":
        return sick_scored_pairs(_shared_folder(folder, "sick"), "train")
    if name == "sick-nli":
        return sick_nli_pairs(_shared_folder(folder, "sick"), "train", hard_negatives=True)
    if name in splits.labelled:
        pairs = same_label_pairs(splits.labelled[name][0], hard_negatives=True, seed=splits.seed)
        pairs.source = f"{name}-train-share"
        return pairs
    if name in splits.ir:
        return ir_pairs(splits.ir_share(name, "train"), name)
    raise ValueError(f"unknown tune source {name!r}; choose from {', '.join(DEFAULT_WEIGHTS)}")


def build_mixture(splits: TuneSplits, weights: Mapping[str, float] | None = None, max_train: int | None = 1000,
                  seed: int = 0) -> Mixture:
    """The mixture of ``weights``' sources (default :data:`DEFAULT_WEIGHTS`), each cut to ``max_train`` rows."""
    weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
    sources = []
    for name, weight in weights.items():
        data = source_data(name, splits)
        if max_train:
            data = data.subset(max_train, seed)
        loss = "cosent" if isinstance(data, ScoredPairData) else "mnrl"
        sources.append(Source(name, data, loss, float(weight), SOURCE_TYPES[name]))
    return Mixture(sources)


# ----------------------------------------------------------------------------- the dev suite


Encode = Callable[[list[str]], np.ndarray]
"""Texts -> L2-normalised embeddings (n, dim)."""


@dataclass
class DevSuite:
    """Dev data of every task type, and the per-item scores a head gets on them (for the paired bootstrap)."""

    sts: ScoredPairData
    classification: dict[str, tuple[ClassificationData, ClassificationData]]  # name -> (support, dev items)
    clustering: tuple[list[str], list[object]]
    retrieval: dict[str, RetrievalData]
    sizes: dict[str, int] = field(default_factory=dict)

    def texts(self) -> list[str]:
        texts = self.sts.texts()
        for support, dev in self.classification.values():
            texts += support.train_texts + dev.test_texts
        texts += self.clustering[0]
        for data in self.retrieval.values():
            texts += list(data.queries.values()) + list(data.corpus.values())
        return list(dict.fromkeys(texts))

    def item_scores(self, encode: Encode) -> dict[str, ItemScores]:
        """Per task type: the item scores of the embeddings ``encode`` makes (all texts embedded once)."""
        texts = self.texts()
        embeddings = encode(texts)
        row = {text: i for i, text in enumerate(texts)}

        def emb(items: Sequence[str]) -> np.ndarray:
            return embeddings[[row[text] for text in items]]

        scores = {"STS": sts_item_scores(emb(self.sts.texts1), emb(self.sts.texts2), self.sts.scores)}
        correct, targets = [], []
        for offset, (support, dev) in enumerate(self.classification.values()):
            labels = sorted(set(support.train_labels), key=str)
            index = {label: i for i, label in enumerate(labels)}
            support_emb, support_labels = emb(support.train_texts), np.array([index[x] for x in support.train_labels])
            centroids = np.stack([support_emb[support_labels == i].mean(axis=0) for i in range(len(labels))])
            centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
            predicted = (emb(dev.test_texts) @ centroids.T).argmax(axis=1)
            gold = np.array([index.get(x, -1) for x in dev.test_labels])
            correct.append(predicted == gold)
            targets.append(gold + 1000 * offset)
        scores["Classification"] = mean_item_scores(np.concatenate(correct).astype(float), "Classification",
                                                    "centroid_accuracy", targets=np.concatenate(targets))
        texts_c, labels_c = self.clustering
        cluster_emb = emb(texts_c)
        similarity = cluster_emb @ cluster_emb.T
        np.fill_diagonal(similarity, -np.inf)
        labels_array = np.array([str(x) for x in labels_c])
        agree = labels_array[similarity.argmax(axis=1)] == labels_array
        scores["Clustering"] = mean_item_scores(agree.astype(float), "Clustering", "nn_label_agreement")
        per_query, ids = [], []
        for name, data in self.retrieval.items():
            query_ids, corpus_ids = data.relevant_query_ids, list(data.corpus)
            result = retrieval_item_scores(emb([data.queries[q] for q in query_ids]),
                                           emb([data.corpus[d] for d in corpus_ids]), query_ids, corpus_ids,
                                           data.qrels)
            per_query.append(result.per_item["ndcg_at_10"])
            ids += [f"{name}:{q}" for q in query_ids]
        scores["Retrieval"] = mean_item_scores(np.concatenate(per_query), "Retrieval", "ndcg_at_10", item_ids=ids)
        return scores


def overall(scores: Mapping[str, ItemScores]) -> float:
    """The overall dev score: the mean over task types of each type's dev metric."""
    return float(np.mean([item.full_score() for item in scores.values()]))


def _stratified_cut(data: ClassificationData, n: int | None, seed: int) -> ClassificationData:
    return data if not n or n >= len(data.test_texts) else data.subset(n, seed)


def build_dev_suite(splits: TuneSplits, max_dev: int | None = 500, support_per_label: int = 8,
                    ir_distractors: int | None = 400, seed: int = 0) -> DevSuite:
    """The dev suite: at most ``max_dev`` items per dev set (STS pairs, classification / clustering items); each
    classification dev set is classified by the nearest class centroid of ``support_per_label`` train-share texts
    per label; IR dev queries rank their judged documents plus ``ir_distractors`` others per collection."""
    sts = stsb_scored_pairs(_shared_folder(splits.data_dir, "stsbenchmark"), "dev")
    if max_dev:
        sts = sts.subset(max_dev, seed)
    classification = {}
    for name in ("banking77", "sst2"):
        train, dev = splits.labelled[name]
        rng = random.Random(seed)
        by_label: dict[object, list[int]] = {}
        for i, label in enumerate(train.train_labels):
            by_label.setdefault(label, []).append(i)
        keep = sorted(i for members in by_label.values() for i in rng.sample(members, min(support_per_label,
                                                                                             len(members))))
        support_texts = [train.train_texts[i] for i in keep]
        support_labels = [train.train_labels[i] for i in keep]
        support = ClassificationData(support_texts, support_labels, support_texts, support_labels)
        classification[name] = (support, _stratified_cut(dev, max_dev, seed))
    news = _stratified_cut(splits.labelled["20newsgroups"][1], max_dev, seed)
    retrieval = {name: splits.ir_share(name, "dev", ir_distractors) for name in splits.ir}
    suite = DevSuite(sts, classification, (news.test_texts, list(news.test_labels)), retrieval)
    suite.sizes = {"STS": len(sts), "Classification": sum(len(d.test_texts) for _, d in classification.values()),
                   "Clustering": len(news.test_texts),
                   "Retrieval": sum(len(d.relevant_query_ids) for d in retrieval.values())}
    return suite


# ----------------------------------------------------------------------------- the test tasks


class LocalCranfieldTestShare(LocalCranfield):
    """LocalCranfield scored on the test share of its queries only (the queries tune never trains or selects on)."""

    split_seed = 0
    metadata = local_task_metadata(
        "LocalCranfieldTestShare", "Retrieval",
        "Cranfield, only the test share (40%, seeded) of its judged queries; the whole corpus.",
        "http://ir.dcs.gla.ac.uk/resources/test_collections/cran/", domains=["Academic", "Engineering", "Written"],
        license="not specified", date=("1960-01-01", "1967-12-31"), annotations="expert-annotated")

    def read_data(self, folder: Path | None) -> RetrievalData:
        return query_share(load_cranfield(folder), "test", self.split_seed)


class LocalCISITestShare(LocalCISI):
    """LocalCISI scored on the test share of its queries only."""

    split_seed = 0
    metadata = local_task_metadata(
        "LocalCISITestShare", "Retrieval",
        "CISI, only the test share (40%, seeded) of its judged queries; the whole corpus.",
        "http://ir.dcs.gla.ac.uk/resources/test_collections/cisi/", domains=["Academic", "Written"],
        license="not specified", date=("1969-01-01", "1980-12-31"), annotations="expert-annotated")

    def read_data(self, folder: Path | None) -> RetrievalData:
        return query_share(load_cisi(folder), "test", self.split_seed)


TEST_TASKS = ("LocalSTSBenchmark", "LocalSICK", "LocalSST2", "LocalBanking77Classification",
              "Local20NewsgroupsClustering", "LocalCranfieldTestShare", "LocalCISITestShare")


def test_tasks(data_dir: str | Path | None = None, max_items: int | None = None, split_seed: int = 0) -> list:
    """The seven local test tasks tune reports on (the IR ones on their test share of queries)."""
    tasks = []
    for name in TEST_TASKS:
        if name in ("LocalCranfieldTestShare", "LocalCISITestShare"):
            cls = LocalCranfieldTestShare if name == "LocalCranfieldTestShare" else LocalCISITestShare
            task = cls(data_dir=data_dir, max_items=max_items)
            task.split_seed = split_seed
            tasks.append(task)
        else:
            tasks.append(get_task(name, data_dir=data_dir, max_items=max_items))
    return tasks


test_tasks.__test__ = False  # not a pytest test
