"""Features of a partial learning curve and of a candidate's configuration, as Baker et al. (2017) use them.

A learning curve is the dev score at steps 0, e, 2e, ... of a candidate's training. The predictor sees a prefix of
it (the points so far) and the candidate's configuration, and predicts the score at the last step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from st_pooling.sweep.space import Candidate

CURVE_FEATURE_NAMES = ("progress", "last", "previous", "first_difference", "second_difference", "mean_slope",
                       "gain_since_start", "best_so_far", "start")


def curve_features(scores: Sequence[float], steps: Sequence[int], total_steps: int) -> np.ndarray:
    """Fixed-length features of the curve prefix ``scores`` at ``steps`` (at least two points).

    progress (fraction of the run done), the last and previous values, the first and second differences at the
    end, the mean slope per eval point since the start, the gain since the start, the best value so far and the
    starting (untrained) value.
    """
    if len(scores) != len(steps) or len(scores) < 2:
        raise ValueError(f"a curve prefix needs at least two (step, score) points, got {len(scores)} scores and "
                         f"{len(steps)} steps")
    values = np.asarray(scores, dtype=np.float64)
    first_difference = values[-1] - values[-2]
    second_difference = first_difference - (values[-2] - values[-3]) if len(values) >= 3 else 0.0
    return np.array([
        steps[-1] / total_steps,
        values[-1],
        values[-2],
        first_difference,
        second_difference,
        (values[-1] - values[0]) / (len(values) - 1),
        values[-1] - values[0],
        values.max(),
        values[0],
    ])


class ConfigEncoder:
    """Numeric features of a candidate's configuration, fixed by the candidates of one search space.

    The pooling as one-hot, log10 of the learning rate, and per pooling option: numbers as log2 (counts such as
    num_latents are multiplicative), booleans as 0/1, lists (layer subsets) by their length and their mean, and
    strings one-hot. An option a candidate does not set reads as 0.
    """

    def __init__(self, candidates: Sequence[Candidate]) -> None:
        self.poolings = sorted({candidate.pooling for candidate in candidates})
        self.numeric: list[str] = []
        self.categorical: list[tuple[str, str]] = []
        self.listed: list[str] = []
        for candidate in candidates:
            for key, value in candidate.options.items():
                if isinstance(value, str):
                    if (key, value) not in self.categorical:
                        self.categorical.append((key, value))
                elif isinstance(value, list | tuple):
                    if key not in self.listed:
                        self.listed.append(key)
                elif key not in self.numeric:
                    self.numeric.append(key)

    @property
    def names(self) -> list[str]:
        return ([f"pooling={name}" for name in self.poolings] + ["log10_lr"] + [f"log2_{key}" for key in self.numeric]
                + [f"{key}={value}" for key, value in self.categorical]
                + [f"{key}_{what}" for key in self.listed for what in ("count", "mean")])

    def encode(self, candidate: Candidate) -> np.ndarray:
        row = [1.0 if candidate.pooling == name else 0.0 for name in self.poolings]
        row.append(math.log10(candidate.learning_rate))
        for key in self.numeric:
            row.append(_log2_or_flag(candidate.options.get(key)))
        for key, value in self.categorical:
            row.append(1.0 if candidate.options.get(key) == value else 0.0)
        for key in self.listed:
            items = candidate.options.get(key) or []
            numbers = [float(item) for item in items if isinstance(item, int | float)]
            row += [float(len(items)), float(np.mean(numbers)) if numbers else 0.0]
        return np.asarray(row, dtype=np.float64)


def _log2_or_flag(value: object) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and value > 0:
        return math.log2(float(value))
    return float(value) if isinstance(value, int | float) else 0.0
