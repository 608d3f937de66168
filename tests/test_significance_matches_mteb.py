"""The significance statistics describe the numbers printed beside them (issue 13).

For every task type, the paired bootstrap's point estimate of a difference equals the difference of the two mteb
main scores, on real mteb runs of the packaged MiniLM: the embedded default tasks and one local task of each type.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest

from st_pooling.evaluation.compare import SCORE_TOLERANCE, compare_poolings
from st_pooling.evaluation.report import write_report
from st_pooling.modules.spec import PoolingSpec
from st_pooling.evaluation.stats import holm_adjusted
from st_pooling.evaluation.tasks import EMBEDDED_DEFAULT_TASKS, get_tasks

LOCAL_ONE_OF_EACH_TYPE = ["LocalSTSBenchmark", "LocalSST2", "LocalBanking77Clustering", "LocalCranfield"]
EXACT = 1e-6


def tolerance(task_type: str) -> float:
    """1e-6, except where mteb rounds its published score (retrieval: 5 decimals), for each of the two scores."""
    return max(EXACT, 2 * SCORE_TOLERANCE.get(task_type, 0.0))


@pytest.fixture(scope="module")
def comparisons(tmp_path_factory, data_dir):
    specs = [PoolingSpec.parse(text) for text in ("mean", "max", "cls", "weighted_mean")]
    runs = {}
    for name, tasks in (("embedded", get_tasks(EMBEDDED_DEFAULT_TASKS)),
                        ("local", get_tasks(LOCAL_ONE_OF_EACH_TYPE, data_dir=data_dir, max_items=200))):
        folder = tmp_path_factory.mktemp(name)
        runs[name] = (compare_poolings("minilm", specs, tasks, folder, n_resamples=200, show_progress_bar=False),
                      folder)
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("suite", ["embedded", "local"])
def test_bootstrap_difference_equals_the_difference_of_mteb_scores(comparisons, suite):
    comparison, _ = comparisons[suite]
    assert set(comparison.task_types.values()) == {"STS", "Classification", "Clustering", "Retrieval"}
    for label in ("max", "cls", "weighted_mean"):
        for task, task_type in comparison.task_types.items():
            result = comparison.bootstrap[label].get(task)
            assert result is not None, f"{task} ({task_type}) has no interval: its items did not reproduce mteb"
            printed = comparison.scores[label][task] - comparison.scores["mean"][task]
            assert result.difference == pytest.approx(printed, abs=tolerance(task_type)), (task, label)
            assert result.score_a == pytest.approx(comparison.scores[label][task], abs=tolerance(task_type) / 2)
            assert result.ci_low <= result.difference <= result.ci_high


@pytest.mark.slow
def test_every_printed_difference_agrees_with_the_printed_scores(comparisons):
    comparison, folder = comparisons["embedded"]
    write_report(comparison, folder)
    rows = list(csv.DictReader((folder / "results.csv").open(encoding="utf-8")))
    reference = {r["task"]: float(r["score"]) for r in rows if r["pooling"] == "mean"}
    compared = [r for r in rows if r["pooling"] != "mean"]
    assert len(compared) == 3 * 4
    for row in compared:
        assert float(row["difference"]) == pytest.approx(float(row["score"]) - reference[row["task"]],
                                                         abs=tolerance(row["task_type"])), row
        # Holm over the three poolings tested against mean on this task
        others = [float(r["p_value"]) for r in compared if r["task"] == row["task"]]
        position = [r["pooling"] for r in compared if r["task"] == row["task"]].index(row["pooling"])
        assert float(row["p_adjusted"]) == pytest.approx(holm_adjusted(others)[position])


@pytest.mark.slow
def test_each_pooling_is_clustered_on_the_same_documents(comparisons):
    """mteb draws a clustering task's runs from the task's random state; every configuration starts from the same
    state, so mean evaluated alone scores what it scores beside other poolings."""
    comparison, folder = comparisons["embedded"]
    alone = compare_poolings("minilm", [PoolingSpec.parse("max")], get_tasks(["MiniNewsgroupsClustering"]),
                             folder / "alone", show_progress_bar=False)
    assert alone.scores["max"]["MiniNewsgroupsClustering"] == pytest.approx(
        comparison.scores["max"]["MiniNewsgroupsClustering"], abs=1e-12)


def test_compare_refuses_an_unknown_correction(tmp_path):
    with pytest.raises(ValueError, match="correction must be one of holm, none"):
        compare_poolings("minilm", [PoolingSpec.parse("mean")], [], tmp_path, correction="bonferroni")


def test_holm_matches_the_step_down_definition():
    p = [0.01, 0.04, 0.03, 0.5]
    assert holm_adjusted(p) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert holm_adjusted([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm_adjusted([]) == []
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm_adjusted([0.2, np.nan])
