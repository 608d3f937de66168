"""Predicting a candidate's final dev score, with an uncertainty, from a prefix of its learning curve.

After Baker et al. (2017): a frequentist regression on curve features (values, first and second differences) plus
configuration features, trained on the curves of candidates that were trained to the end, each curve giving one
training row per prefix. The model predicts the *gain still to come* (final - last value), which is small and
similar across candidates, rather than the final value itself, so a handful of curves suffice.

The uncertainty comes from an ensemble: each member is fit on a bootstrap resample of the finished *curves* (rows of
one curve are not independent, so they are resampled together), and the spread of the members' predictions, with a
floor ``min_std`` x the fraction of the run still to come (the final score is known exactly at the end), is the
standard deviation of a Gaussian over the final score. An ensemble fit on one or two curves
agrees with itself about curves unlike them, so a trend term is added: the gain still to come if the curve kept
rising at its latest slope per unit of learning rate (which decays linearly to 0 at the end, so that gain is
slope x steps left / 2), times ``trend_weight`` / number of finished curves. A curve still rising steeply is then
not written off while the predictor has seen little, and the term fades as finished curves accumulate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from st_pooling.sweep.curves import ConfigEncoder, curve_features
from st_pooling.sweep.space import Candidate

METHODS = ("forest", "svr")


@dataclass(frozen=True)
class Curve:
    """A candidate's learning curve: dev ``scores`` at ``steps`` (step 0 first)."""

    candidate: Candidate
    steps: tuple[int, ...]
    scores: tuple[float, ...]

    def prefix(self, length: int) -> Curve:
        return Curve(self.candidate, self.steps[:length], self.scores[:length])

    @property
    def final(self) -> float:
        return self.scores[-1]


@dataclass(frozen=True)
class Prediction:
    """A Gaussian belief over the final dev score."""

    mean: float
    std: float

    def probability_above(self, value: float) -> float:
        """P(final > value)."""
        return float(norm.sf(value, loc=self.mean, scale=self.std))


def _make_regressor(method: str, seed: int):
    if method == "forest":
        from sklearn.ensemble import RandomForestRegressor

        return RandomForestRegressor(n_estimators=40, min_samples_leaf=2, max_features=0.6, random_state=seed)
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVR

    return make_pipeline(StandardScaler(), SVR(C=3.0, epsilon=0.05, gamma="scale"))


class FinalScorePredictor:
    """Regression of the final dev score on a curve prefix and the configuration, with ensemble uncertainty.

    Args:
        encoder: the configuration features of the search space's candidates.
        total_steps: the steps of a full run (the curves' last step).
        method: 'forest' (random forests) or 'svr' (support-vector regression, as in Baker et al.).
        n_models: members of the bootstrap ensemble.
        min_std: the smallest standard deviation a prediction at step 0 is given (dev-score units); it shrinks in
            proportion to the steps left.
        min_points: the shortest prefix (in curve points, step 0 included) trained on and predicted from.
        trend_weight: weight of the trend term of the uncertainty (0: the ensemble spread and min_std only).
    """

    def __init__(self, encoder: ConfigEncoder, total_steps: int, *, method: str = "forest", n_models: int = 8,
                 min_std: float = 0.003, min_points: int = 2, trend_weight: float = 1.0, seed: int = 0) -> None:
        if method not in METHODS:
            raise ValueError(f"predictor method must be one of {', '.join(METHODS)}, got {method!r}")
        if n_models < 2:
            raise ValueError(f"n_models must be >= 2 for an uncertainty, got {n_models}")
        if min_points < 2:
            raise ValueError(f"min_points must be >= 2 (a curve prefix needs two points), got {min_points}")
        self.encoder, self.total_steps, self.method = encoder, total_steps, method
        if trend_weight < 0:
            raise ValueError(f"trend_weight must be >= 0, got {trend_weight}")
        self.n_models, self.min_std, self.min_points, self.seed = n_models, min_std, min_points, seed
        self.trend_weight = trend_weight
        self.members: list = []
        self.target_scale = 1.0
        self.n_curves = 0

    def features(self, curve: Curve) -> np.ndarray:
        return np.concatenate([curve_features(curve.scores, curve.steps, self.total_steps),
                               self.encoder.encode(curve.candidate)])

    def _remaining(self, curve: Curve) -> float:
        """The fraction of the run still to come: gains are learned per unit of it, so they shrink to 0 at the end."""
        return max(1e-6, 1.0 - curve.steps[-1] / self.total_steps)

    def _rows(self, curves: Sequence[Curve]) -> tuple[np.ndarray, np.ndarray]:
        features, targets = [], []
        for curve in curves:
            for length in range(self.min_points, len(curve.scores)):
                prefix = curve.prefix(length)
                features.append(self.features(prefix))
                targets.append((curve.final - prefix.scores[-1]) / self._remaining(prefix))
        return np.asarray(features), np.asarray(targets)

    def fit(self, finished: Sequence[Curve]) -> FinalScorePredictor:
        """Train on the curves of candidates trained to the end (at least one)."""
        finished = [curve for curve in finished if len(curve.scores) > self.min_points]
        if not finished:
            raise ValueError(f"the predictor needs at least one finished curve of more than {self.min_points} points")
        features, targets = self._rows(finished)
        self.target_scale = float(np.std(targets)) or 1.0
        rng = np.random.default_rng(self.seed)
        self.members = []
        for member in range(self.n_models):
            chosen = rng.integers(0, len(finished), size=len(finished)) if len(finished) > 1 else np.zeros(1, int)
            member_features, member_targets = self._rows([finished[i] for i in chosen])
            regressor = _make_regressor(self.method, self.seed + member)
            regressor.fit(member_features, member_targets / self.target_scale)
            self.members.append(regressor)
        self.n_curves = len(finished)
        return self

    def predict(self, partial: Curve) -> Prediction:
        """The belief over ``partial``'s final score given its points so far."""
        if not self.members:
            raise RuntimeError("fit the predictor on finished curves first")
        if partial.steps[-1] >= self.total_steps:
            return Prediction(float(partial.scores[-1]), self.min_std)
        row = self.features(partial)[None, :]
        gains = np.array([float(member.predict(row)[0]) for member in self.members]) * self.target_scale \
            * self._remaining(partial)
        spread = float(gains.std(ddof=1)) if len(gains) > 1 else 0.0
        trend = self.trend_weight * self.trend_gain(partial) / max(1, self.n_curves)
        floor = self.min_std * self._remaining(partial)  # the final score is known exactly at the end
        return Prediction(float(partial.scores[-1] + gains.mean()), math.sqrt(spread**2 + floor**2 + trend**2))

    def trend_gain(self, partial: Curve) -> float:
        """The gain still to come if the curve kept its latest (positive) slope per unit of the linearly decaying
        learning rate: slope x steps left / 2."""
        if len(partial.scores) < 2:
            return 0.0
        slope = (partial.scores[-1] - partial.scores[-2]) / max(1, partial.steps[-1] - partial.steps[-2])
        return max(0.0, slope) * (self.total_steps - partial.steps[-1]) / 2


@dataclass(frozen=True)
class HeldOutErrors:
    """Predictions for held-out curve prefixes beside the truth and the last-value baseline."""

    predicted: np.ndarray
    last_value: np.ndarray
    actual: np.ndarray
    progress: np.ndarray

    @property
    def mae(self) -> float:
        return float(np.mean(np.abs(self.predicted - self.actual)))

    @property
    def last_value_mae(self) -> float:
        return float(np.mean(np.abs(self.last_value - self.actual)))

    @property
    def r2(self) -> float:
        return r_squared(self.predicted, self.actual)

    @property
    def last_value_r2(self) -> float:
        return r_squared(self.last_value, self.actual)

    def summary(self) -> dict[str, float]:
        return {"points": int(len(self.actual)), "mae": self.mae, "last_value_mae": self.last_value_mae,
                "r2": self.r2, "last_value_r2": self.last_value_r2}


def r_squared(predicted: Sequence[float], actual: Sequence[float]) -> float:
    """1 - SS_res / SS_tot (nan with fewer than two points or constant truth)."""
    predicted, actual = np.asarray(predicted, float), np.asarray(actual, float)
    if len(actual) < 2 or np.allclose(actual, actual.mean()):
        return math.nan
    return float(1.0 - np.sum((actual - predicted) ** 2) / np.sum((actual - actual.mean()) ** 2))


def held_out_errors(train: Sequence[Curve], test: Sequence[Curve], make_predictor, lengths: Sequence[int]
                    ) -> HeldOutErrors:
    """Fit ``make_predictor()`` on ``train`` curves and predict the final score of every ``test`` curve from its
    prefixes of the given ``lengths`` (in points)."""
    predictor = make_predictor().fit(train)
    predicted, last, actual, progress = [], [], [], []
    for curve in test:
        for length in lengths:
            if length >= len(curve.scores):
                continue
            prefix = curve.prefix(length)
            predicted.append(predictor.predict(prefix).mean)
            last.append(prefix.scores[-1])
            actual.append(curve.final)
            progress.append(prefix.steps[-1] / predictor.total_steps)
    return HeldOutErrors(*(np.asarray(values, float) for values in (predicted, last, actual, progress)))


def leave_one_curve_out(curves: Sequence[Curve], make_predictor, lengths: Sequence[int]) -> HeldOutErrors:
    """Each curve predicted by a predictor fit on all the others (needs at least two curves)."""
    if len(curves) < 2:
        raise ValueError("leave-one-curve-out needs at least two finished curves")
    parts = [held_out_errors([other for other in curves if other is not curve], [curve], make_predictor, lengths)
             for curve in curves]
    return HeldOutErrors(*(np.concatenate([getattr(part, name) for part in parts])
                           for name in ("predicted", "last_value", "actual", "progress")))
