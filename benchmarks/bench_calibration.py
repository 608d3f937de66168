"""Calibration of the paired bootstrap on simulated data: observed coverage and test size beside the nominal 0.95 and
0.05, from the same simulations as tests/test_stats.py (which assert tolerances around them).

    python benchmarks/bench_calibration.py        # about a minute on one CPU core; writes benchmarks/results/calibration.json
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from st_pooling.evaluation.item_scores import mean_item_scores, sts_item_scores, sts_item_scores_from_cosines
from st_pooling.evaluation.stats import paired_bootstrap


def mean_difference_coverage(truth: float = 0.1, draws: int = 300) -> float:
    rng, covered = np.random.default_rng(11), 0
    for seed in range(draws):
        shared = rng.normal(size=100)
        a = mean_item_scores(shared + rng.normal(scale=0.7, size=100) + truth)
        b = mean_item_scores(shared + rng.normal(scale=0.7, size=100))
        result = paired_bootstrap(a, b, n_resamples=400, seed=seed)
        covered += result.ci_low <= truth <= result.ci_high
    return covered / draws


def test_size(draws: int = 300) -> float:
    rng, rejected = np.random.default_rng(12), 0
    for seed in range(draws):
        shared = rng.normal(size=100)
        a = mean_item_scores(shared + rng.normal(scale=0.7, size=100))
        b = mean_item_scores(shared + rng.normal(scale=0.7, size=100))
        rejected += paired_bootstrap(a, b, n_resamples=400, seed=seed).p_value < 0.05
    return rejected / draws


def spearman_coverage(draws: int = 120) -> float:
    def population(noise: float) -> float:  # Spearman of a bivariate normal with correlation 1 / sqrt(1 + noise^2)
        return 6 / math.pi * math.asin(1 / math.sqrt(1 + noise**2) / 2)

    rng, truth, covered = np.random.default_rng(13), population(0.8) - population(1.2), 0
    for seed in range(draws):
        gold = rng.normal(size=200)
        a = sts_item_scores_from_cosines(gold + rng.normal(scale=0.8, size=200), gold)
        b = sts_item_scores_from_cosines(gold + rng.normal(scale=1.2, size=200), gold)
        result = paired_bootstrap(a, b, n_resamples=300, seed=seed)
        covered += result.ci_low <= truth <= result.ci_high
    return covered / draws


def noisy_copies(draws: int = 300, shifted: int = 40, pairs: int = 150, dim: int = 64) -> tuple[float, int]:
    """Two noisy copies of the same sentence embeddings (true difference 0): share of intervals covering 0; and how
    many of ``shifted`` draws with a real advantage (less noise) are significant."""
    rng, covered, detected = np.random.default_rng(21), 0, 0
    for seed in range(draws):
        gold = rng.uniform(0, 5, size=pairs)
        angle = (1 - gold / 5)[:, None] * np.pi / 2
        first, other = rng.normal(size=(2, pairs, dim)) / np.sqrt(dim)
        clean1, clean2 = first, np.cos(angle) * first + np.sin(angle) * other

        def noisy(scale: float):
            noise = scale / np.sqrt(dim)
            return sts_item_scores(clean1 + rng.normal(scale=noise, size=clean1.shape),
                                   clean2 + rng.normal(scale=noise, size=clean2.shape), gold)

        same = paired_bootstrap(noisy(0.5), noisy(0.5), n_resamples=300, seed=seed)
        covered += same.ci_low <= 0 <= same.ci_high
        if seed < shifted:
            detected += paired_bootstrap(noisy(0.2), noisy(0.8), n_resamples=300, seed=seed).significant()
    return covered / draws, detected


def main() -> None:
    covered_zero, detected = noisy_copies()
    figures = {"mean_difference_coverage": mean_difference_coverage(), "test_size": test_size(),
               "spearman_coverage": spearman_coverage(), "noisy_copies_cover_zero": covered_zero,
               "shift_detected_of_40": detected}
    for name, value in figures.items():
        nominal = {"test_size": 0.05, "shift_detected_of_40": None}.get(name, 0.95)
        print(f"{name:<28} observed {value:<8.3f}" + (f" nominal {nominal}" if nominal else ""))
    out = Path(__file__).parent / "results" / "calibration.json"
    out.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
