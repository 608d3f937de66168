"""Significance of the difference between two poolings.

Two levels, as in Tang and Yang (2024):

* per task, :func:`paired_bootstrap` resamples the task's items (pairs, queries, examples,
  documents) with replacement, the same resample for both poolings, and recomputes the
  task's metric for each: a percentile confidence interval and a two-sided p-value for
  the score difference;
* per task type, :func:`wilcoxon_across_tasks` runs a Wilcoxon signed-rank test on the
  per-task score differences (the study marks p < 0.05 per task type this way).

The table formatters at the end only format results computed by the functions above.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np
from scipy.stats import bootstrap, wilcoxon

from st_pooling.evaluation.item_scores import ItemScores

DEFAULT_ALPHA = 0.05
ResultT = TypeVar("ResultT", "BootstrapResult", "WilcoxonResult")
_MAX_INDEX_ELEMENTS_PER_CHUNK = 2_000_000  # resample indices held in memory at once


@dataclass(frozen=True)
class BootstrapResult:
    """Paired bootstrap of metric(a) - metric(b) on one task.

    Attributes:
        difference: metric of pooling a minus metric of pooling b, over all items.
        ci_low, ci_high: percentile confidence interval of the difference.
        p_value: two-sided bootstrap p-value for "no difference" (see ``paired_bootstrap``).
        n_items: number of items resampled.
        n_resamples: number of bootstrap rounds.
        confidence: confidence level of the interval, e.g. 0.95.
        score_a, score_b: each pooling's metric over all items.
        p_adjusted: ``p_value`` corrected for the other comparisons made on the same task (Holm), or None when
            no correction was applied; significance reads it when present.
    """

    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    n_items: int
    n_resamples: int
    confidence: float
    score_a: float
    score_b: float
    p_adjusted: float | None = None

    @property
    def p_for_significance(self) -> float:
        return self.p_value if self.p_adjusted is None else self.p_adjusted

    def significant(self, alpha: float = DEFAULT_ALPHA) -> bool:
        """Whether the (corrected, where corrected) p-value is below ``alpha``."""
        return self.p_for_significance < alpha


def _check_paired(a: ItemScores, b: ItemScores) -> None:
    """Refuse to pair item scores that are not over the same items of the same task."""
    if a.task_type != b.task_type or a.metric_name != b.metric_name:
        raise ValueError(
            f"cannot pair {a.task_type}/{a.metric_name} scores with {b.task_type}/{b.metric_name} "
            "scores: compare two poolings on the same task"
        )
    if a.n_items != b.n_items:
        raise ValueError(
            f"the two poolings were scored on different numbers of items ({a.n_items} vs {b.n_items}): "
            "a paired bootstrap needs the same items, in the same order, for both"
        )
    if a.item_ids is not None and b.item_ids is not None and a.item_ids != b.item_ids:
        raise ValueError("the two poolings' item ids differ: score both on the same items in the same order")
    if a.targets is not None and b.targets is not None and not np.array_equal(a.targets, b.targets):
        raise ValueError(
            "the two poolings' gold targets (scores or labels) differ item by item: "
            "score both on the same items in the same order"
        )


def _two_sided_bootstrap_p_value(differences: np.ndarray) -> float:
    """p = min(1, 2 * min(#(d* <= 0) + 1, #(d* >= 0) + 1) / (R + 1)).

    Twice the smaller tail of the bootstrap distribution beyond zero: the smallest alpha
    for which the (1 - alpha) percentile interval would still exclude zero. The +1
    (counting the observed sample as one more resample) keeps p above zero, so with R
    resamples the smallest reportable p is 2 / (R + 1).
    """
    n_resamples = differences.size
    at_or_below = int(np.count_nonzero(differences <= 0)) + 1
    at_or_above = int(np.count_nonzero(differences >= 0)) + 1
    return min(1.0, 2.0 * min(at_or_below, at_or_above) / (n_resamples + 1))


def check_bootstrap_settings(n_resamples: int, confidence: float = 0.95) -> None:
    """Refuse settings for which a percentile interval is meaningless (call before any expensive work)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1 (e.g. 0.95), got {confidence}")
    minimum_resamples = math.ceil(2 / (1 - confidence))
    if n_resamples < minimum_resamples:
        raise ValueError(
            f"n_resamples={n_resamples} is too few for a {confidence:.0%} percentile interval: "
            f"use at least {minimum_resamples} (1000 or more is usual)"
        )


def paired_bootstrap(
    a: ItemScores,
    b: ItemScores,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> BootstrapResult:
    """Paired bootstrap of the difference metric(a) - metric(b) over a task's items.

    ``scipy.stats.bootstrap`` draws n_items item indices with replacement per round; both
    poolings' metrics are evaluated on that same resample. Its percentile interval of the
    round differences is the confidence interval and :func:`_two_sided_bootstrap_p_value`
    of its bootstrap distribution the p-value. Resamples are evaluated in vectorised
    batches (1,000 rounds over 1,000 STS pairs take well under a second on one CPU core).

    Raises:
        ValueError: if the item scores cannot be paired, there are fewer than 2 items, the
            settings are out of range, or a resample has an undefined metric.
    """
    _check_paired(a, b)
    check_bootstrap_settings(n_resamples, confidence)
    n_items = a.n_items
    if n_items < 2:
        raise ValueError(f"a bootstrap needs at least 2 items, got {n_items}")

    def difference(indices: np.ndarray, axis: int = -1) -> np.ndarray:  # scipy hands resampled index rows
        rows = np.atleast_2d(indices)  # (resamples, n_items)
        values = a.metric_batch(rows) - b.metric_batch(rows)
        return values if indices.ndim > 1 else values[0]

    # scipy resamples the item indices; both poolings' metrics read the same resample, so the test is paired.
    result = bootstrap((np.arange(n_items),), difference, n_resamples=n_resamples, vectorized=True,
                       confidence_level=confidence, method="percentile",
                       batch=max(1, _MAX_INDEX_ELEMENTS_PER_CHUNK // n_items), rng=np.random.default_rng(seed))
    differences = result.bootstrap_distribution
    if not np.all(np.isfinite(differences)):
        raise ValueError(
            f"{int((~np.isfinite(differences)).sum())} bootstrap resample(s) gave an undefined "
            f"{a.metric_name}: the task has too few or too degenerate items for a bootstrap"
        )

    score_a = a.full_score()
    score_b = b.full_score()
    return BootstrapResult(
        difference=score_a - score_b,
        ci_low=float(result.confidence_interval.low),
        ci_high=float(result.confidence_interval.high),
        p_value=_two_sided_bootstrap_p_value(differences),
        n_items=n_items,
        n_resamples=n_resamples,
        confidence=confidence,
        score_a=score_a,
        score_b=score_b,
    )


# ----------------------------------------------------------------------------- Wilcoxon


@dataclass(frozen=True)
class WilcoxonResult:
    """Wilcoxon signed-rank test of per-task score differences (a - b).

    Attributes:
        statistic: scipy's statistic (the smaller of the signed-rank sums), or None.
        p_value: two-sided p-value, or None when the test cannot reach ``alpha`` (see reason).
        n_tasks: tasks compared.
        n_nonzero: tasks whose difference is not zero (zeros are dropped, Wilcoxon's rule).
        mean_difference: mean over tasks of score_a - score_b.
        reason: why p_value is None, else None.
        p_adjusted: ``p_value`` corrected for the other poolings tested on the same task type (Holm), or None.
    """

    statistic: float | None
    p_value: float | None
    n_tasks: int
    n_nonzero: int
    mean_difference: float
    reason: str | None = None
    p_adjusted: float | None = None

    @property
    def p_for_significance(self) -> float | None:
        return self.p_value if self.p_adjusted is None else self.p_adjusted

    def significant(self, alpha: float = DEFAULT_ALPHA) -> bool:
        """Whether a (corrected, where corrected) p-value exists and is below ``alpha``."""
        return self.p_for_significance is not None and self.p_for_significance < alpha


def minimum_tasks_for_wilcoxon(alpha: float = DEFAULT_ALPHA) -> int:
    """Fewest non-zero differences for which the exact two-sided test can give p < alpha.

    With n differences all of one sign the exact two-sided p is 2 / 2**n, its smallest
    value: 0.0625 for n = 5, 0.03125 for n = 6, so at alpha = 0.05 six tasks are needed.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    n = 1
    while 2 / 2**n >= alpha:
        n += 1
    return n


def wilcoxon_across_tasks(
    scores_a: Mapping[str, float],
    scores_b: Mapping[str, float],
    alpha: float = DEFAULT_ALPHA,
) -> WilcoxonResult:
    """Two-sided Wilcoxon signed-rank test over the tasks both mappings score.

    ``scores_a`` and ``scores_b`` map task name -> main score and must name the same tasks.
    Zero differences are dropped ("wilcox" zero method). scipy's ``method="auto"`` uses
    the exact null distribution for up to 50 differences without ties, an exact
    permutation test for up to 13 with ties, else the normal approximation. With fewer
    non-zero differences than :func:`minimum_tasks_for_wilcoxon` (6 at alpha = 0.05),
    p < alpha is unreachable and the result has ``p_value=None`` and a reason.
    """
    missing_in_b = sorted(set(scores_a) - set(scores_b))
    missing_in_a = sorted(set(scores_b) - set(scores_a))
    if missing_in_a or missing_in_b:
        raise ValueError(
            f"both poolings must be scored on the same tasks; only in a: {missing_in_b}, "
            f"only in b: {missing_in_a}"
        )
    if not scores_a:
        raise ValueError("no tasks to compare")
    tasks = sorted(scores_a)
    differences = np.array([float(scores_a[t]) - float(scores_b[t]) for t in tasks])
    if not np.all(np.isfinite(differences)):
        bad = [t for t, d in zip(tasks, differences, strict=True) if not np.isfinite(d)]
        raise ValueError(f"non-finite scores for tasks {bad}: fix or drop them before testing")
    nonzero = differences[differences != 0]
    needed = minimum_tasks_for_wilcoxon(alpha)
    mean_difference = float(differences.mean())
    if nonzero.size < needed:
        reason = (
            f"{nonzero.size} task(s) with a non-zero difference; the exact two-sided Wilcoxon "
            f"test needs at least {needed} to reach p < {alpha}"
        )
        return WilcoxonResult(None, None, len(tasks), int(nonzero.size), mean_difference, reason)
    test = wilcoxon(nonzero, alternative="two-sided", method="auto")
    return WilcoxonResult(
        statistic=float(test.statistic),
        p_value=float(test.pvalue),
        n_tasks=len(tasks),
        n_nonzero=int(nonzero.size),
        mean_difference=mean_difference,
    )


def wilcoxon_by_task_type(
    scores_a: Mapping[str, float],
    scores_b: Mapping[str, float],
    task_types: Mapping[str, str],
    alpha: float = DEFAULT_ALPHA,
) -> dict[str, WilcoxonResult]:
    """:func:`wilcoxon_across_tasks` within each task type (task name -> type mapping)."""
    if set(scores_a) != set(scores_b):
        raise ValueError(
            "both poolings must be scored on the same tasks; differing tasks: "
            f"{sorted(set(scores_a) ^ set(scores_b))}"
        )
    untyped = sorted(set(scores_a) - set(task_types))
    if untyped:
        raise ValueError(f"task_types has no type for tasks {untyped}")
    grouped: dict[str, list[str]] = {}
    for task in scores_a:
        grouped.setdefault(task_types[task], []).append(task)
    return {
        task_type: wilcoxon_across_tasks(
            {t: scores_a[t] for t in tasks},
            {t: scores_b[t] for t in tasks},
            alpha=alpha,
        )
        for task_type, tasks in sorted(grouped.items())
    }


CORRECTIONS = ("holm", "none")


def holm_adjusted(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error rate), in the input order.

    Sorted ascending, the i-th smallest (0-based) of m becomes max over j <= i of min(1, (m - j) p_(j)).
    scipy offers Benjamini-Hochberg (``false_discovery_control``) but not Holm, hence these few lines.
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.size == 0:
        return []
    if np.any((p < 0) | (p > 1) | np.isnan(p)):
        raise ValueError(f"p-values must lie in [0, 1], got {p.tolist()}")
    order = np.argsort(p, kind="stable")
    stepped = np.minimum(1.0, (p.size - np.arange(p.size)) * p[order])
    adjusted = np.empty_like(p)
    adjusted[order] = np.maximum.accumulate(stepped)
    return adjusted.tolist()


def corrected(results: Mapping[str, ResultT], correction: str) -> dict[str, ResultT]:
    """The results (one per pooling compared with the reference) with ``p_adjusted`` set by ``correction``;
    results without a p-value are left as they are."""
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {', '.join(CORRECTIONS)}, got {correction!r}")
    testable = {name: r.p_value for name, r in results.items() if r.p_value is not None}
    if correction == "none" or not testable:
        return dict(results)
    adjusted = dict(zip(testable, holm_adjusted(list(testable.values()))))
    return {name: replace(r, p_adjusted=adjusted[name]) if name in adjusted else r for name, r in results.items()}


def significance_mark(p_value: float | None, alpha: float = DEFAULT_ALPHA) -> str:
    """"*" when ``p_value`` < ``alpha``, else "" (also for a missing p-value)."""
    if p_value is None:
        return ""
    if not 0 <= p_value <= 1 or math.isnan(p_value):
        raise ValueError(f"a p-value must lie in [0, 1], got {p_value}")
    return "*" if p_value < alpha else ""


# ----------------------------------------------------------------------------- tables
# Formatting only: these take results computed above and return markdown strings.
