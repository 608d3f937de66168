"""The search's fast-path trainer, on a multi-task mixture, judged on every task type's dev split.

:class:`MixtureTrainer` is a :class:`~st_pooling.sweep.candidates.SearchTrainer` whose feature caches cover every
mixture and dev text, and :class:`MixtureRun` a :class:`~st_pooling.sweep.candidates.CandidateRun` whose step draws a
source (probability proportional to its weight), takes that source's next batch and applies that source's own loss;
everything else (the step of :class:`~st_pooling.training.fast_path.HeadTraining`, the learning-curve early
stopping of :class:`~st_pooling.sweep.strategies.SearchSession`) is the search's own.

Its dev score is :func:`st_pooling.tuning.data.overall` (the mean over task types). At every evaluation point the
trainer also applies the never-worse rule: a point is *eligible* when no task type's dev score is significantly
below the native pooling's (paired bootstrap, p < alpha, uncorrected, so the rule errs towards calling a head
worse); the eligible point with the best overall dev score, if that beats the native pooling's overall dev score, is
kept (its head weights), whichever candidate it belongs to and wherever on its curve.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Normalize

from st_pooling.evaluation.item_scores import ItemScores
from st_pooling.evaluation.stats import BootstrapResult, paired_bootstrap
from st_pooling.models import pooling_for
from st_pooling.modules.spec import PoolingSpec
from st_pooling.sweep.candidates import CandidateRun, SearchTrainer
from st_pooling.sweep.space import Candidate, SearchSpace
from st_pooling.training.batches import BatchStream
from st_pooling.training.fast_path import load_trained_weights
from st_pooling.training.losses import make_loss
from st_pooling.tuning.data import DevSuite, Mixture, overall

ALPHA = 0.05


@dataclass
class PointVerdict:
    """One evaluated point of one candidate: its dev scores and how they compare with the native pooling."""

    candidate: str
    label: str
    step: int
    overall: float
    per_type: dict[str, float]
    versus_native: dict[str, BootstrapResult] = field(default_factory=dict)  # filled for points that could win
    alpha: float = ALPHA

    @property
    def worse_types(self) -> list[str]:
        return [t for t, r in self.versus_native.items() if r.difference < 0 and r.significant(self.alpha)]


class MixtureTrainer(SearchTrainer):
    """Shared base, caches and data of a tune search; keeps the best eligible head (see the module docstring)."""

    def __init__(self, space: SearchSpace, mixture: Mixture, dev: DevSuite, *, native: str, device: str | None = None,
                 cache_dtype: str = "float16", n_resamples: int = 1000, alpha: float = ALPHA,
                 show_progress_bar: bool = False) -> None:
        # the mixture's first source is what CandidateRun builds its (unused) single loss from; the dev suite judges
        super().__init__(space, device=device, cache_dtype=cache_dtype, show_progress_bar=show_progress_bar,
                         data=(mixture.sources[0].data, None))
        self.mixture, self.dev = mixture, dev
        self.native, self.n_resamples, self.alpha = native, n_resamples, alpha
        self.native_scores: dict[str, ItemScores] | None = None
        self.verdicts: list[PointVerdict] = []
        self.best: PointVerdict | None = None
        self.best_state: dict[str, torch.Tensor] | None = None

    @property
    def texts(self) -> list[str]:
        return list(dict.fromkeys(self.mixture.texts() + self.dev.texts()))

    def start(self, candidate: Candidate) -> MixtureRun:
        return MixtureRun(self, candidate)

    def native_model(self) -> SentenceTransformer:
        """[frozen base, the native parameter-free pooling, Normalize] on the shared base."""
        candidate = Candidate(-1, PoolingSpec(self.native), 1.0)
        transformer = self.transformer_for(candidate)
        return SentenceTransformer(modules=[transformer, pooling_for(transformer, self.native), Normalize()],
                                   device=self.device)

    def native_dev_scores(self) -> dict[str, ItemScores]:
        if self.native_scores is None:
            model = self.native_model()
            embedder = self.embedder_for(model)
            self.native_scores = self.dev.item_scores(lambda texts: embedder.encode(texts))
        return self.native_scores

    def judge(self, run: MixtureRun) -> PointVerdict:
        """Score ``run``'s head on the dev suite; keep it if it is the best eligible point so far."""
        scores = self.dev.item_scores(lambda texts: run.embedder.encode(texts))
        verdict = PointVerdict(run.candidate.id, run.candidate.label, run.step, overall(scores),
                               {t: s.full_score() for t, s in scores.items()}, alpha=self.alpha)
        native = self.native_dev_scores()
        bar = max(overall(native), self.best.overall if self.best else -math.inf)
        if run.step > 0 and verdict.overall > bar:  # only a point that could win is tested (it is what decides)
            verdict.versus_native = {t: paired_bootstrap(scores[t], native[t], n_resamples=self.n_resamples,
                                                         seed=self.space.seed) for t in scores}
            if not verdict.worse_types:
                self.best, self.best_state = verdict, run.training.trained_weights()
        self.verdicts.append(verdict)
        return verdict

    def winner_model(self) -> SentenceTransformer | None:
        """The kept head in a ready model (None: no point qualified, the native pooling stays)."""
        if self.best is None:
            return None
        candidate = next(c for c in self.space.candidates if c.id == self.best.candidate)
        model = self.build_model(candidate)
        load_trained_weights(model, model[1], self.best_state)
        return model.eval()


class MixtureRun(CandidateRun):
    """A candidate trained on the mixture: a source per step, that source's batch and loss."""

    def __init__(self, trainer: MixtureTrainer, candidate: Candidate, mixture: Mixture | None = None) -> None:
        """``mixture``: train on these sources instead of the trainer's (their texts must be in its caches, e.g. a
        subset of its sources: what benchmarks/bench_tune_sources.py does)."""
        super().__init__(trainer, candidate)
        self.mixture = mixture or trainer.mixture
        self.losses = {source.name: make_loss(source.loss, self.model, source.data)
                       for source in self.mixture.sources}
        self.rng = random.Random(candidate.seed)
        self.source_batches = {source.name: BatchStream(source.data, self.space.batch_size, candidate.seed)
                               for source in self.mixture.sources}
        self.drawn: dict[str, int] = {source.name: 0 for source in self.mixture.sources}

    def train_step(self) -> None:
        """One step on a source drawn by its weight: that source's next batch, with its own loss."""
        source = self.mixture.draw(self.rng)
        self.drawn[source.name] += 1
        rows = self.source_batches[source.name].next()
        self.training.train_step(self.losses[source.name], source.data, rows, what=f"{source.name} loss")

    def evaluate(self) -> float:
        verdict = self.trainer.judge(self)
        self.head.eval()
        return verdict.overall if math.isfinite(verdict.overall) else float("-inf")
