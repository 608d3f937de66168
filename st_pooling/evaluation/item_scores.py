"""Per-item scores of one pooling on one task, for paired significance tests.

mteb reports one number per task. st-pooling decomposes it into items so that the metric over all
items equals mteb's main score exactly: STS and retrieval from the embeddings (the same cosines mteb
computes), classification and clustering from the predictions mteb itself wrote
(``mteb.evaluate(..., prediction_folder=...)``):

| task type      | item             | metric over a set of items                          |
|----------------|------------------|-----------------------------------------------------|
| STS            | sentence pair    | Spearman between cosine(e1, e2) and the gold score   |
| Retrieval      | query            | mean per-query nDCG@10 (exact cosine search)         |
| Classification | test example     | accuracy, averaged over mteb's experiments' predictions |
| Clustering     | document         | v-measure, averaged over mteb's clustering runs      |

Each builder returns an :class:`ItemScores`: the per-item arrays and a metric that maps a
resample of item indices to the task's metric. The mteb score stays the headline number;
these give the uncertainty of the difference between two poolings (see ``stats.py``).

Metrics take index arrays of shape ``(n_resamples, n_items)`` so a bootstrap evaluates
many resamples in one vectorised call.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence, Sized
from dataclasses import dataclass, field

import numpy as np
from scipy.special import xlogy

_CONSTANT_TOLERANCE = 1e-12  # spreads below this are floating-point noise, not signal

BatchMetric = Callable[[np.ndarray], np.ndarray]
"""Maps item indices of shape (n_resamples, n_items) to one metric value per resample."""


@dataclass(frozen=True, eq=False)  # identity equality: fields hold numpy arrays
class ItemScores:
    """What a paired bootstrap needs from one pooling on one task.

    Attributes:
        task_type: "STS", "Retrieval", "Classification", "Clustering" or a custom name.
        metric_name: the metric ``batch_metric`` computes, e.g. "cosine_spearman".
        per_item: arrays with one entry per item that the metric reads (cosines, per-query
            nDCG, correctness, cluster ids), for inspection.
        batch_metric: maps indices (n_resamples, n_items) to (n_resamples,) metric values.
        targets: the gold side of each item (gold scores, labels), or None. Two ItemScores
            compared in a paired test must have equal targets: a cheap check that both
            poolings were scored on the same items in the same order.
        item_ids: identifiers of the items (query ids for retrieval), or None; checked like
            ``targets``.
    """

    task_type: str
    metric_name: str
    per_item: Mapping[str, np.ndarray]
    batch_metric: BatchMetric = field(repr=False)
    targets: np.ndarray | None = field(default=None, repr=False)
    item_ids: tuple[str, ...] | None = field(default=None, repr=False)

    @property
    def n_items(self) -> int:
        """Number of items (pairs, queries, examples or documents)."""
        return len(next(iter(self.per_item.values())))

    def metric_batch(self, indices: np.ndarray) -> np.ndarray:
        """The metric for each row of ``indices`` (shape (n_resamples, n_items))."""
        indices = np.asarray(indices)
        if indices.ndim != 2:
            raise ValueError(
                f"metric_batch expects indices of shape (n_resamples, n_items), got {indices.shape}"
            )
        return np.asarray(self.batch_metric(indices), dtype=np.float64)

    def metric(self, indices: Sequence[int] | np.ndarray) -> float:
        """The metric over the items at ``indices`` (repeats allowed, as in a resample)."""
        indices = np.asarray(indices)
        if indices.ndim != 1 or indices.size == 0:
            raise ValueError(
                f"metric expects a non-empty 1-D array of item indices, got shape {indices.shape}"
            )
        return float(self.metric_batch(indices[None, :])[0])

    def full_score(self) -> float:
        """The metric over all items once: the point estimate on this task."""
        return self.metric(np.arange(self.n_items))


# ----------------------------------------------------------------------------- helpers


def _float_matrix(name: str, values: np.ndarray, keep_float32: bool = False) -> np.ndarray:
    """A finite 2-D float64 array (float32 input stays float32 with ``keep_float32``, to
    halve the memory of large corpora), or a ValueError that names the argument."""
    array = np.asarray(values)
    keep = keep_float32 and array.dtype == np.float32
    array = array.astype(np.float32 if keep else np.float64, copy=False)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (items, dim), got shape {array.shape}")
    if array.shape[0] == 0:
        raise ValueError(f"{name} is empty: there are no items to score")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values: check the model's outputs")
    return array


def _float_vector(name: str, values: Sequence[float] | np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def _l2_normalised(name: str, embeddings: np.ndarray, zero_rows_allowed: bool = False) -> np.ndarray:
    """Rows scaled to unit length. With ``zero_rows_allowed`` an all-zero row stays zero (cosine 0 to everything,
    as mteb's cos_sim gives it); otherwise it is an error."""
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    zero_rows = np.flatnonzero(norms[:, 0] == 0)
    if zero_rows.size and zero_rows_allowed:
        return embeddings / np.where(norms == 0, 1, norms)
    if zero_rows.size:
        raise ValueError(
            f"{name} has {zero_rows.size} all-zero embedding(s) (first at row {zero_rows[0]}): "
            "cosine similarity is undefined for them"
        )
    return embeddings / norms


def _same_length(**arrays: Sized) -> None:
    lengths = {name: len(array) for name, array in arrays.items()}
    if len(set(lengths.values())) != 1:
        described = ", ".join(f"{name}={length}" for name, length in lengths.items())
        raise ValueError(f"these must have one entry per item, but the lengths differ: {described}")


# ----------------------------------------------------------------------------- generic


def mean_item_scores(
    values: Sequence[float] | np.ndarray,
    task_type: str = "custom",
    metric_name: str = "mean",
    targets: np.ndarray | None = None,
    item_ids: Sequence[str] | None = None,
) -> ItemScores:
    """ItemScores for a metric that is the mean of a per-item value (accuracy, nDCG)."""
    per_item = _float_vector("values", values)
    if per_item.size == 0:
        raise ValueError("values is empty: there are no items to score")

    def mean_over_resample(indices: np.ndarray) -> np.ndarray:
        return per_item[indices].mean(axis=1)

    return ItemScores(
        task_type=task_type,
        metric_name=metric_name,
        per_item={metric_name: per_item},
        batch_metric=mean_over_resample,
        targets=targets,
        item_ids=tuple(item_ids) if item_ids is not None else None,
    )


# ----------------------------------------------------------------------------- STS


class ResampleRanks:
    """Average ranks of one set of values within any resample of it, without sorting each resample.

    The values are sorted once. In a resample that draws item ``i`` ``c_i`` times, the average rank of a value
    (ties averaged, as ``scipy.stats.rankdata``) is the number of drawn values below it plus half of (the number
    of drawn values equal to it + 1): a cumulative sum of the draw counts over the sorted tie groups, linear in the
    number of items rather than n log n per resample.
    """

    def __init__(self, values: np.ndarray) -> None:
        self.order = np.argsort(values, kind="stable")
        sorted_values = values[self.order]
        starts_group = np.r_[True, sorted_values[1:] != sorted_values[:-1]]
        self.group_starts = np.flatnonzero(starts_group)
        self.group = np.empty(values.size, dtype=np.int64)
        self.group[self.order] = np.cumsum(starts_group) - 1

    def of(self, counts: np.ndarray) -> np.ndarray:
        """Each item's average rank in each resample, from draw counts of shape (resamples, items)."""
        per_group = counts[:, self.order]
        if self.group_starts.size < per_group.shape[1]:  # tied values: count each tie group once
            per_group = np.add.reduceat(per_group, self.group_starts, axis=1)
        group_rank = np.cumsum(per_group, axis=1) - per_group + (per_group + 1) / 2
        return group_rank[:, self.group]


def draw_counts(indices: np.ndarray, n_items: int) -> np.ndarray:
    """How often each item is drawn in each row of ``indices`` (resamples, draws): shape (resamples, n_items)."""
    n_rows = indices.shape[0]
    codes = (np.arange(n_rows)[:, None] * n_items + indices).ravel()
    return np.bincount(codes, minlength=n_rows * n_items).reshape(n_rows, n_items).astype(np.float64)


def spearman_of_resamples(x_ranks: ResampleRanks, y_ranks: ResampleRanks, indices: np.ndarray) -> np.ndarray:
    """Spearman correlation of ``x`` with ``y`` over each resample (row of item ``indices``).

    Equal to ``scipy.stats.spearmanr(x[row], y[row])`` for every row (ties get average ranks): the Pearson
    correlation of the two rank vectors, each item weighted by how often the resample drew it. A resample in
    which ``x`` or ``y`` is constant has no defined correlation: that raises instead of returning NaN.
    """
    counts = draw_counts(indices, x_ranks.group.size)
    middle = (indices.shape[1] + 1) / 2  # the mean rank of any n draws
    rank_x = x_ranks.of(counts) - middle
    rank_y = y_ranks.of(counts) - middle
    denominator = np.sqrt(np.einsum("ri,ri,ri->r", counts, rank_x, rank_x)
                          * np.einsum("ri,ri,ri->r", counts, rank_y, rank_y))
    if np.any(denominator == 0):
        raise ValueError(
            f"Spearman correlation is undefined on {int((denominator == 0).sum())} resample(s) "
            "where all cosines or all gold scores are equal; this happens with very few "
            "pairs or heavily tied gold scores: use more pairs"
        )
    return np.einsum("ri,ri,ri->r", counts, rank_x, rank_y) / denominator


def sts_item_scores(
    emb1: np.ndarray, emb2: np.ndarray, gold: Sequence[float] | np.ndarray
) -> ItemScores:
    """Items are sentence pairs; the metric is Spearman(cosine(e1, e2), gold), as mteb's
    ``cosine_spearman`` main score.
    """
    first = _l2_normalised("emb1", _float_matrix("emb1", emb1))
    second = _l2_normalised("emb2", _float_matrix("emb2", emb2))
    _same_length(emb1=first, emb2=second, gold=np.asarray(gold))
    if first.shape[1] != second.shape[1]:
        raise ValueError(f"emb1 and emb2 differ in dimension: {first.shape[1]} vs {second.shape[1]}")
    return sts_item_scores_from_cosines(np.einsum("ij,ij->i", first, second), gold)


def sts_item_scores_from_cosines(
    cosines: Sequence[float] | np.ndarray, gold: Sequence[float] | np.ndarray
) -> ItemScores:
    """:func:`sts_item_scores` from precomputed pair similarities."""
    cosines = _float_vector("cosines", cosines)
    gold_scores = _float_vector("gold", gold)
    _same_length(cosines=cosines, gold=gold_scores)
    if len(gold_scores) < 3:
        raise ValueError(f"STS needs at least 3 pairs for a Spearman correlation, got {len(gold_scores)}")
    if np.ptp(gold_scores) == 0:
        raise ValueError("all gold scores are equal: Spearman correlation is undefined")
    if np.ptp(cosines) <= _CONSTANT_TOLERANCE:
        raise ValueError(
            "all pairs have the same cosine similarity, up to rounding (a collapsed "
            "embedding?): Spearman correlation is undefined"
        )

    cosine_ranks, gold_ranks = ResampleRanks(cosines), ResampleRanks(gold_scores)

    def spearman_over_resample(indices: np.ndarray) -> np.ndarray:
        return spearman_of_resamples(cosine_ranks, gold_ranks, indices)

    return ItemScores(
        task_type="STS",
        metric_name="cosine_spearman",
        per_item={"cosine": cosines, "gold": gold_scores},
        batch_metric=spearman_over_resample,
        targets=gold_scores,
    )


# ----------------------------------------------------------------------------- retrieval


def ndcg_at_k(
    ranked_doc_ids: Sequence[str], relevance: Mapping[str, float], k: int = 10
) -> float:
    """nDCG@k of one ranking with graded relevance.

    DCG@k = sum over ranks i = 1..k of gain(doc_i) / log2(i + 1), where gain is the
    relevance grade (linear gain, as trec_eval's ``ndcg_cut``); grades <= 0 count as 0.
    The ideal DCG sorts every judged grade of the query (from the qrels, whether or not
    the document was retrieved) in decreasing order.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    ideal_gains = sorted((g for g in relevance.values() if g > 0), reverse=True)[:k]
    if not ideal_gains:
        raise ValueError("the query has no document with positive relevance: nDCG is undefined")
    gains = [max(float(relevance.get(doc_id, 0.0)), 0.0) for doc_id in ranked_doc_ids[:k]]
    dcg = sum(gain / math.log2(rank + 2) for rank, gain in enumerate(gains))
    ideal_dcg = sum(gain / math.log2(rank + 2) for rank, gain in enumerate(ideal_gains))
    return dcg / ideal_dcg


def top_k_by_cosine(query_emb: np.ndarray, corpus_emb: np.ndarray, k: int, chunk_size: int = 256) -> np.ndarray:
    """Indices of the k corpus rows with the highest cosine to each query, best first.

    Exact search; ties are broken by corpus order (the earlier document ranks higher).
    Returns an array of shape (n_queries, min(k, n_corpus)).
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    queries = _l2_normalised("query_emb", _float_matrix("query_emb", query_emb, keep_float32=True))
    # an empty document (possible in real corpora, e.g. Cranfield) embeds to zeros with a decoder that adds no
    # special token: it then ranks at cosine 0, as in mteb
    corpus = _l2_normalised("corpus_emb", _float_matrix("corpus_emb", corpus_emb, keep_float32=True),
                            zero_rows_allowed=True)
    if queries.shape[1] != corpus.shape[1]:
        raise ValueError(
            f"query and corpus embeddings differ in dimension: {queries.shape[1]} vs {corpus.shape[1]}"
        )
    k = min(k, corpus.shape[0])
    ranked = np.empty((queries.shape[0], k), dtype=np.int64)
    for start in range(0, queries.shape[0], chunk_size):
        scores = queries[start : start + chunk_size] @ corpus.T  # (chunk, n_corpus)
        # the k-th largest score per query; everything at or above it is a candidate, so ties
        # at the cut-off are resolved by corpus order below rather than by argpartition
        kth_largest = -np.partition(-scores, k - 1, axis=1)[:, k - 1]
        for row, (row_scores, threshold) in enumerate(zip(scores, kth_largest, strict=True)):
            candidates = np.flatnonzero(row_scores >= threshold)
            order = np.lexsort((candidates, -row_scores[candidates]))
            ranked[start + row] = candidates[order[:k]]
    return ranked


def retrieval_item_scores(
    query_emb: np.ndarray,
    corpus_emb: np.ndarray,
    query_ids: Sequence[str],
    corpus_ids: Sequence[str],
    qrels: Mapping[str, Mapping[str, float]],
    k: int = 10,
    ignore_identical_ids: bool = False,
) -> ItemScores:
    """Items are queries; the metric is the mean per-query nDCG@k (mteb's main score for
    most retrieval tasks is nDCG@10), with an exact cosine ranking over the whole corpus.

    ``qrels`` maps query id -> {document id: relevance grade}. Every query must have at
    least one document with positive relevance (otherwise its nDCG is undefined): drop
    such queries before calling. With ``ignore_identical_ids`` a document whose id equals the
    query id is never ranked (query-by-document tasks, as mteb's option of the same name).
    """
    queries = _float_matrix("query_emb", query_emb, keep_float32=True)
    corpus = _float_matrix("corpus_emb", corpus_emb, keep_float32=True)
    _same_length(query_emb=queries, query_ids=query_ids)
    _same_length(corpus_emb=corpus, corpus_ids=corpus_ids)
    if len(set(query_ids)) != len(query_ids) or len(set(corpus_ids)) != len(corpus_ids):
        raise ValueError("query_ids and corpus_ids must each be unique")
    unjudged = [qid for qid in query_ids if not any(g > 0 for g in qrels.get(qid, {}).values())]
    if unjudged:
        raise ValueError(
            f"{len(unjudged)} query(ies) have no relevant document in qrels (e.g. {unjudged[:3]}): "
            "their nDCG is undefined; drop them from query_ids/query_emb"
        )
    ranked = top_k_by_cosine(queries, corpus, min(k + int(ignore_identical_ids), corpus.shape[0]))
    corpus_id_array = np.asarray(list(corpus_ids), dtype=object)
    per_query = np.array(
        [
            ndcg_at_k([doc for doc in corpus_id_array[ranked_row] if not (ignore_identical_ids and doc == qid)][:k],
                      qrels[qid], k)
            for qid, ranked_row in zip(query_ids, ranked, strict=True)
        ]
    )
    return mean_item_scores(
        per_query, task_type="Retrieval", metric_name=f"ndcg_at_{k}", item_ids=list(query_ids)
    )


# ----------------------------------------------------------------------------- classification


def classification_item_scores(predictions: np.ndarray, test_labels: Sequence[object] | np.ndarray) -> ItemScores:
    """Items are test examples; the metric is mteb's accuracy, from mteb's own predictions.

    ``predictions`` has one row per mteb experiment (mteb fits ``n_experiments`` classifiers on label-balanced
    subsamples of train and averages their accuracies): shape (experiments, test items). An item's score is its
    correctness averaged over the experiments, so the mean over all items equals mteb's accuracy exactly.
    """
    predicted = np.asarray(predictions)
    labels = np.asarray(test_labels)
    if predicted.ndim != 2 or predicted.shape[0] == 0:
        raise ValueError(f"predictions must have shape (experiments, items), got {predicted.shape}")
    _same_length(predictions_per_experiment=predicted[0], test_labels=labels)
    correct = (predicted == labels[None, :]).mean(axis=0)  # (items,): share of experiments that got it right
    return mean_item_scores(correct, task_type="Classification", metric_name="accuracy", targets=labels)


# ----------------------------------------------------------------------------- clustering


def _entropy_from_counts(counts: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """Entropy (nats) of each row's distribution given as (weighted) counts; counts (R, m), totals (R,)."""
    return np.log(totals) - xlogy(counts, counts).sum(axis=1) / totals


def v_measure_rows(labels: np.ndarray, clusters: np.ndarray, n_labels: int, n_clusters: int,
                   weights: np.ndarray | None = None) -> np.ndarray:
    """V-measure of each row of (labels, clusters), both integer codes of shape (R, n), each item counted
    ``weights`` times (default once; shape (R, n)).

    Same definition as scikit-learn's ``v_measure_score`` (beta = 1) on the items repeated by their weights:
    homogeneity and completeness are 1 when the corresponding entropy is 0; v is 0 when both are 0.
    """
    n_rows, n_items = labels.shape
    codes = (np.arange(n_rows)[:, None] * n_labels + labels) * n_clusters + clusters
    counted = None if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    joint = np.bincount(codes.ravel(), weights=counted, minlength=n_rows * n_labels * n_clusters)
    joint = joint.reshape(n_rows, n_labels, n_clusters).astype(np.float64)  # (R, labels, clusters)
    totals = joint.sum(axis=(1, 2))
    entropy_labels = _entropy_from_counts(joint.sum(axis=2), totals)
    entropy_clusters = _entropy_from_counts(joint.sum(axis=1), totals)
    entropy_joint = _entropy_from_counts(joint.reshape(n_rows, -1), totals)
    mutual_information = np.maximum(entropy_labels + entropy_clusters - entropy_joint, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        homogeneity = np.where(entropy_labels > 0, mutual_information / entropy_labels, 1.0)
        completeness = np.where(entropy_clusters > 0, mutual_information / entropy_clusters, 1.0)
        v_measure = np.where(
            homogeneity + completeness > 0,
            2 * homogeneity * completeness / (homogeneity + completeness),
            0.0,
        )
    return v_measure


def clustering_item_scores(run_documents: np.ndarray, run_clusters: np.ndarray,
                           labels: Sequence[object] | np.ndarray) -> ItemScores:
    """Items are documents; the metric is mteb's v-measure averaged over its clustering runs, from mteb's own runs.

    mteb clusters ``runs`` samples of the documents (drawn with replacement) and averages the v-measures.
    ``run_documents`` (runs, sample size) holds which document each sampled position is, ``run_clusters`` the
    cluster mteb's k-means gave it. A resample of documents counts each sampled position as often as its document
    was drawn, in every run (the same resample for both poolings, whose runs sample the same documents); with every
    document drawn once this is mteb's score exactly. The k-means assignments stay as mteb fitted them.
    """
    documents = np.asarray(run_documents, dtype=np.int64)
    clusters = np.asarray(run_clusters, dtype=np.int64)
    label_array = np.asarray(labels)
    if documents.ndim != 2 or documents.shape != clusters.shape:
        raise ValueError(f"run_documents and run_clusters must both be (runs, sample size), got {documents.shape} "
                         f"and {clusters.shape}")
    label_values, label_codes = np.unique(label_array, return_inverse=True)
    n_labels, n_clusters = label_values.size, int(clusters.max()) + 1
    run_labels = label_codes[documents]  # (runs, sample size)

    def v_measure_over_resample(indices: np.ndarray) -> np.ndarray:
        draws = draw_counts(indices, label_array.size)  # (resamples, documents): times each was drawn
        per_run = [v_measure_rows(np.broadcast_to(run_labels[r], draws.shape[:1] + run_labels[r].shape),
                                  np.broadcast_to(clusters[r], draws.shape[:1] + clusters[r].shape),
                                  n_labels, n_clusters, weights=draws[:, documents[r]])
                   for r in range(documents.shape[0])]
        return np.mean(per_run, axis=0)

    return ItemScores(
        task_type="Clustering",
        metric_name="v_measure",
        per_item={"label": label_codes},
        batch_metric=v_measure_over_resample,
        targets=label_array,
    )
