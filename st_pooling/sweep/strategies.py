"""How a search spends its compute: predictive early stopping, successive halving, or training every candidate.

* ``predictive`` (Baker et al. 2017, with a warm-up): every candidate is first trained to its first check point
  (``first_check`` steps, a quarter of eval_every by default) and evaluated there. The candidates are then taken in
  descending order of that score, so the most promising sets the bar early. The first ``n_bootstrap`` are trained to
  the end to give the predictor its first curves. Every later candidate is checked at each of its check points,
  which double from ``first_check`` (first_check, 2 first_check, 4 first_check, ..., the end): the predictor (refit
  whenever another candidate has finished) gives a Gaussian belief over its final dev score, and the candidate is
  stopped when P(final > best final so far + ``min_improvement``) < ``threshold``.
* ``halving`` (successive halving, the baseline): all candidates get a small budget; the best 1/eta by dev score
  there go on to eta times the budget, and so on up to the full run. A candidate is evaluated only where halving
  reads its score: at the end of each rung it reaches.
* ``all``: every candidate trained to the end (the reference the others are measured against), evaluated on the
  space's eval_every grid so its full learning curves can be read.

Dev evaluations are counted apart from training steps (``CandidateRecord.evaluations``): on a dev set of a few
hundred pairs one costs as much as several training steps. The score of an untrained head is the same for every
learning rate (same pooling, options and seed), so it is evaluated once and shared.

A :class:`SearchSession` owns the state file, the checkpoints and the runs in memory, so each strategy is a short
loop over "advance these candidates to that step"; everything it decides is a function of the recorded curves, so a
restarted search makes the same decisions and skips what is done.

Under several processes (torchrun / accelerate launch; :class:`~st_pooling.training.distributed.Ranks`) the
candidates of each such group are dealt out, one per rank at a time (a round). Every rank holds the same state and
applies the same rules; a rank advances its candidate writing nothing, and after each round the ranks exchange the
records, checkpoints and finished heads (JSON and bytes). The main process alone writes the state file, the
checkpoints and the best model, and a candidate continued on another rank in a later round starts from the main
process's checkpoint of it. Warm-up, halving rungs and ``all`` are embarrassingly parallel and decide exactly as in
one process; predictive search's stop rule then compares each round's candidates with the best finished before that
round (in one process, with the best finished before the candidate).
"""

from __future__ import annotations

import io
import logging
import math
import pickle
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from st_pooling.sweep.curves import ConfigEncoder
from st_pooling.sweep.predictor import METHODS, Curve, FinalScorePredictor
from st_pooling.sweep.candidates import CandidateRun, SearchTrainer
from st_pooling.sweep.space import Candidate, SearchSpace
from st_pooling.sweep.state import CandidateRecord, SearchState, open_state, write_bytes_atomically
from st_pooling.training.distributed import Ranks

logger = logging.getLogger(__name__)

STRATEGIES = ("predictive", "halving", "all")
EventCallback = Callable[[str, CandidateRecord], None]
"""Called as ``on_event(event, record)`` with event one of 'point', 'paused', 'stopped', 'finished', after the
state file has been written."""


@dataclass(frozen=True)
class PredictiveSettings:
    """Predictive early stopping: bootstrap runs, the stop threshold, and the predictor."""

    n_bootstrap: int = 1
    threshold: float = 0.05
    min_points: int = 2
    method: str = "forest"
    n_models: int = 8
    min_std: float = 0.003
    trend_weight: float = 1.0
    """Weight of the predictor's trend term (uncertainty for a still-rising curve while few curves are finished)."""
    min_improvement: float = 0.0
    """A candidate is worth finishing only if it may beat the best by more than this (dev-score units)."""
    first_check: int | None = None
    """Steps to the first check point (None: a quarter of the space's eval_every); later ones double it."""
    warm_up: bool = True
    """Train every candidate to its first check before any further, and go on in descending order of that score."""

    def __post_init__(self) -> None:
        if self.n_bootstrap < 1:
            raise ValueError(f"n_bootstrap must be >= 1 (the predictor needs finished curves), got {self.n_bootstrap}")
        if not 0 < self.threshold < 1:
            raise ValueError(f"threshold must lie in (0, 1), got {self.threshold}")
        if self.min_points < 2:
            raise ValueError(f"min_points must be >= 2, got {self.min_points}")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.min_std <= 0:
            raise ValueError(f"min_std must be > 0, got {self.min_std}")
        if self.trend_weight < 0:
            raise ValueError(f"trend_weight must be >= 0, got {self.trend_weight}")
        if self.min_improvement < 0:
            raise ValueError(f"min_improvement must be >= 0, got {self.min_improvement}")
        if self.first_check is not None and self.first_check < 1:
            raise ValueError(f"first_check must be >= 1, got {self.first_check}")


@dataclass(frozen=True)
class HalvingSettings:
    """Successive halving: keep the best 1/eta at each rung; ``min_steps`` is the first rung's budget."""

    eta: int = 3
    min_steps: int | None = None

    def __post_init__(self) -> None:
        if self.eta < 2:
            raise ValueError(f"eta must be >= 2, got {self.eta}")
        if self.min_steps is not None and self.min_steps < 1:
            raise ValueError(f"min_steps must be >= 1, got {self.min_steps}")


def settings_for(strategy: str, **options: Any) -> PredictiveSettings | HalvingSettings | None:
    """The settings object of ``strategy`` from keyword options (None values keep the defaults)."""
    options = {key: value for key, value in options.items() if value is not None}
    if strategy == "predictive":
        return PredictiveSettings(**options)
    if strategy == "halving":
        return HalvingSettings(**options)
    if strategy == "all":
        if options:
            raise ValueError(f"strategy 'all' takes no settings, got {', '.join(options)}")
        return None
    raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")


def search_order(space: SearchSpace) -> list[Candidate]:
    """The candidates in the seeded random order every strategy trains them in."""
    order = list(space.candidates)
    random.Random(space.seed).shuffle(order)
    return order


def check_steps(space: SearchSpace, settings: PredictiveSettings) -> list[int]:
    """Predictive search's evaluation points: 0, then ``first_check`` doubling up to the full run (which is one)."""
    first = min(settings.first_check or max(1, space.eval_every // 4), space.steps)
    points, step = [0], first
    while step < space.steps:
        points.append(step)
        step *= 2
    return points + [space.steps]


def rung_budgets(space: SearchSpace, settings: HalvingSettings) -> list[int]:
    """Successive halving's budgets (steps), each a multiple of eval_every, the last the full run."""
    n = len(space.candidates)
    rungs = max(0, int(math.floor(math.log(n, settings.eta) + 1e-9)))
    if settings.min_steps:
        rungs = min(rungs, max(0, int(math.floor(math.log(space.steps / settings.min_steps, settings.eta) + 1e-9))))
    budgets = []
    for rung in range(rungs + 1):
        raw = space.steps / settings.eta ** (rungs - rung)
        budget = min(space.steps, max(space.eval_every, space.eval_every * round(raw / space.eval_every)))
        if not budgets or budget > budgets[-1]:
            budgets.append(budget)
    if budgets[-1] != space.steps:
        budgets.append(space.steps)
    return budgets


@dataclass
class _RoundOutcome:
    """What one rank did with its candidate in a round, until the ranks exchange it."""

    events: list[str] = field(default_factory=list)
    checkpoint: bytes = b""
    head: bytes = b""


class SearchSession:
    """A search in an output folder: the state file, the checkpoints, the best model, and the runs in memory."""

    def __init__(self, space: SearchSpace, trainer: SearchTrainer, output: str | Path, strategy: str,
                 settings: PredictiveSettings | HalvingSettings | None = None,
                 on_event: EventCallback | None = None, ranks: Ranks | None = None) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
        self.space, self.trainer, self.strategy = space, trainer, strategy
        self.settings = settings if settings is not None else settings_for(strategy)
        self.output = Path(output)
        self.state_path = self.output / "state.json"
        self.ranks = ranks or Ranks()

        def opened() -> tuple[dict[str, Any], bool]:  # the main process reads the state; every rank gets it
            state, resumed = open_state(self.state_path, space, strategy, asdict(self.settings) if self.settings else {})
            return state.to_dict(), resumed

        state, resumed = self.ranks.on_main(opened)
        self.state, self.resumed = SearchState.from_dict(state), bool(resumed)
        self._round: _RoundOutcome | None = None  # set while this rank advances its candidate of a round
        self._checkpoints: dict[str, bytes] = {}  # distributed: this round's checkpoints, from the main process
        self.on_event = on_event
        self.candidates = {candidate.id: candidate for candidate in space.candidates}
        self.encoder = ConfigEncoder(space.candidates)
        self._runs: dict[str, CandidateRun] = {}
        self._predictor: FinalScorePredictor | None = None
        self._predictor_curves: tuple[str, ...] = ()

    @property
    def best_model_dir(self) -> Path:
        return self.output / "best_model"

    def checkpoint_path(self, candidate: Candidate) -> Path:
        return self.output / "checkpoints" / f"{candidate.id}.pt"

    # ------------------------------------------------------------------------------------- running

    @property
    def _writes(self) -> bool:
        """Whether this process writes the search's files now: the main process, outside a round."""
        return self.ranks.is_main and self._round is None

    def _save_state(self) -> None:
        if self._writes:
            self.state.save(self.state_path)

    def run(self) -> SearchState:
        """Run (or continue) the search to its end; returns the final state."""
        self.trainer.prepare()
        self._save_state()
        if self.strategy == "predictive":
            self._run_predictive()
        elif self.strategy == "halving":
            self._run_halving()
        else:
            self.advance_all(search_order(self.space), self.space.steps)
        return self.state

    def training_order(self) -> list[Candidate]:
        """The order candidates go on in: predictive search after its warm-up, in descending order of the score at
        the first check (the seeded order until every candidate has reached it); otherwise the seeded order."""
        order = search_order(self.space)
        if self.strategy == "predictive" and self.settings.warm_up:
            first = check_steps(self.space, self.settings)[1]
            order = sorted(order, key=lambda c: -self._score_at(self.state.record(c), first))
        return order

    def _run_predictive(self) -> None:
        points = check_steps(self.space, self.settings)
        if self.settings.warm_up:
            self.advance_all(search_order(self.space), points[1], points=points)
        order = self.training_order()
        bootstrap = self.settings.n_bootstrap
        self.advance_all(order[:bootstrap], self.space.steps, points=points)
        self.advance_all(order[bootstrap:], self.space.steps, decide=self._predictive_rule, points=points)

    def _run_halving(self) -> None:
        alive = search_order(self.space)
        budgets = rung_budgets(self.space, self.settings)
        for rung, budget in enumerate(budgets):
            self.advance_all(alive, budget, points=budgets)
            if budget >= self.space.steps:
                break
            keep = max(1, len(alive) // self.settings.eta)
            ranked = sorted(alive, key=lambda c: -self._score_at(self.state.record(c), budget))
            for candidate in ranked[keep:]:
                self.stop(candidate, f"not among the best {keep} of {len(alive)} at rung {rung} ({budget} steps)")
            alive = ranked[:keep]

    @staticmethod
    def _score_at(record: CandidateRecord, step: int) -> float:
        return record.scores[record.steps.index(step)] if step in record.steps else float("-inf")

    def _run_of(self, candidate: Candidate) -> CandidateRun:
        """The candidate's run: in memory, else from a checkpoint that matches the state, else from scratch."""
        if candidate.id in self._runs:
            return self._runs[candidate.id]
        record = self.state.record(candidate)
        run = self.trainer.start(candidate)
        path = self.checkpoint_path(candidate)
        source: str | Path | IO[bytes] | None = path if path.exists() else None
        if self.ranks.distributed:  # the main process's checkpoint, sent to the rank continuing the candidate
            source = io.BytesIO(self._checkpoints[candidate.id]) if self._checkpoints.get(candidate.id) else None
        if record.steps and source is not None:
            try:
                run.load_checkpoint(source)
            except (OSError, EOFError, RuntimeError, KeyError, ValueError, pickle.UnpicklingError) as error:
                # checkpoints are written atomically, so an unreadable one was damaged or planted: say so, start over
                logger.warning("search: checkpoint %s could not be read (%s: %s); %s is trained again from its "
                               "start", path, type(error).__name__, str(error).splitlines()[0] if str(error) else "",
                               candidate.id)
                run = self.trainer.start(candidate)
            if run.steps != record.steps:
                run = self.trainer.start(candidate)
        if not run.steps and record.steps:  # no usable checkpoint: retrain from the start (same seed, same curve)
            record.steps, record.scores, record.predictions, record.seconds = [], [], [], 0.0
            record.evaluations, record.eval_seconds = 0, 0.0
        self._runs[candidate.id] = run
        return run

    def _known_start(self, candidate: Candidate) -> float | None:
        """The step-0 score of an identical untrained head (same pooling, options, seed) already evaluated."""
        for other in self.space.candidates:
            if other.id != candidate.id and other.head_key == candidate.head_key:
                record = self.state.record(other)
                if record.steps and record.steps[0] == 0 and record.evaluations:
                    return record.scores[0]
        return None

    def _has_reached(self, candidate: Candidate, to_step: int) -> bool:
        """Finished, stopped, or already past ``to_step`` (a run interrupted further on is continued later)."""
        record = self.state.record(candidate)
        return record.status in ("finished", "stopped") or (record.status in ("paused", "running")
                                                            and bool(record.steps) and record.steps_trained >= to_step)

    def advance_all(self, candidates: Sequence[Candidate], to_step: int,
                    decide: Callable[[Candidate, CandidateRecord], str | None] | None = None,
                    points: list[int] | None = None) -> None:
        """:meth:`advance` each of ``candidates`` in order; under several processes, one per rank per round."""
        if not self.ranks.distributed:
            for candidate in candidates:
                self.advance(candidate, to_step, decide, points)
            return
        pending = [candidate for candidate in candidates if not self._has_reached(candidate, to_step)]
        for start in range(0, len(pending), self.ranks.world):
            self._advance_round(pending[start:start + self.ranks.world], to_step, decide, points)

    def _advance_round(self, group: list[Candidate], to_step: int,
                       decide: Callable[[Candidate, CandidateRecord], str | None] | None,
                       points: list[int] | None) -> None:
        """Rank r advances ``group[r]`` writing nothing; then the ranks exchange what they did and the main process
        writes it (checkpoints, best model, state file) in the group's order."""
        ranks = self.ranks
        self._runs.clear()  # a candidate continues from the main process's checkpoint, whichever rank had it before
        self._checkpoints = {}
        for candidate in group:
            path = self.checkpoint_path(candidate)
            data = path.read_bytes() if ranks.is_main and path.is_file() else None
            self._checkpoints[candidate.id] = ranks.broadcast_bytes(data)
        mine = group[ranks.rank] if ranks.rank < len(group) else None
        self._round = _RoundOutcome()
        try:
            if mine is not None:
                self.advance(mine, to_step, decide, points)
            outcome = self._round
        finally:
            self._round = None
        records = ranks.all_gather_json(None if mine is None else
                                        {"record": asdict(self.state.record(mine)), "events": outcome.events})
        checkpoints = ranks.all_gather_bytes(outcome.checkpoint)
        heads = ranks.all_gather_bytes(outcome.head)
        for candidate, item, checkpoint, head in zip(group, records, checkpoints, heads):
            record = self.state.records[candidate.id] = CandidateRecord(**item["record"])
            if record.status == "finished":
                best = self.state.best
                if best is None or (record.final or 0.0) > (best.final or 0.0):
                    self.state.best_id = candidate.id
                    if ranks.is_main:
                        run = self.trainer.start(candidate)
                        run.load_weights(head)
                        run.steps, run.scores = list(record.steps), list(record.scores)
                        run.save_model(self.best_model_dir)
            if ranks.is_main:
                path = self.checkpoint_path(candidate)
                if record.status in ("finished", "stopped"):
                    path.unlink(missing_ok=True)
                elif checkpoint:
                    write_bytes_atomically(path, checkpoint)
            self._save_state()
            for event in item["events"]:
                self._emit(event, record)

    def advance(self, candidate: Candidate, to_step: int,
                decide: Callable[[Candidate, CandidateRecord], str | None] | None = None,
                points: list[int] | None = None) -> CandidateRecord:
        """Train ``candidate`` up to ``to_step`` (pausing there), to the end (finishing), or until ``decide``
        returns a reason to stop it, recording the dev score at each of ``points`` on the way (default: the space's
        eval_every grid, step 0 included). ``decide`` is also asked at the point the candidate has reached already.
        Finished and stopped candidates are left as they are."""
        record = self.state.record(candidate)
        if self._has_reached(candidate, to_step):
            return record
        points = sorted(set(points if points is not None else self.space.eval_steps) | {to_step})
        run = self._run_of(candidate)
        record.status = "running"
        if decide is not None and run.steps and not (record.predictions
                                                     and record.predictions[-1]["step"] == record.steps[-1]):
            reason = decide(candidate, record)
            if reason:
                return self.stop(candidate, reason)
        while not run.steps or run.step < to_step:
            target = next(point for point in points if point > run.step or (not run.steps and point == run.step))
            known = self._known_start(candidate) if target == 0 else None
            try:
                if known is not None:
                    run.known_start(known)
                else:
                    run.next_point(target)
            except FloatingPointError as error:
                return self.stop(candidate, f"diverged: {error}")
            record.steps, record.scores, record.seconds = list(run.steps), list(run.scores), run.seconds
            record.evaluations, record.eval_seconds = run.evaluations, run.eval_seconds
            if run.finished:
                return self._finish(candidate, run)
            if not math.isfinite(run.scores[-1]):
                return self.stop(candidate, "the dev score is not a number (the head diverged)")
            reason = decide(candidate, record) if decide is not None else None
            if reason:
                return self.stop(candidate, reason)
            self._save_checkpoint(candidate, run)
            self._save_state()
            self._emit("point", record)
        record.status = "paused"
        self._save_state()
        self._emit("paused", record)
        return record

    def stop(self, candidate: Candidate, reason: str) -> CandidateRecord:
        record = self.state.record(candidate)
        if record.status in ("finished", "stopped"):
            return record
        record.status, record.stop_reason = "stopped", reason
        self._save_state()
        self._forget(candidate)
        self._emit("stopped", record)
        return record

    def _finish(self, candidate: Candidate, run: CandidateRun) -> CandidateRecord:
        record = self.state.record(candidate)
        record.status = "finished"
        if self._round is not None:  # the best is chosen when the ranks exchange the round
            self._round.head = run.weights_bytes()
        else:
            best = self.state.best
            if best is None or (record.final or 0.0) > (best.final or 0.0):
                if self._writes:
                    run.save_model(self.best_model_dir)
                self.state.best_id = candidate.id
        self._save_state()
        self._forget(candidate)
        self._emit("finished", record)
        return record

    def _save_checkpoint(self, candidate: Candidate, run: CandidateRun) -> None:
        if self._round is not None:
            self._round.checkpoint = run.checkpoint_bytes()
        elif self._writes:
            run.save_checkpoint(self.checkpoint_path(candidate))

    def _forget(self, candidate: Candidate) -> None:
        self._runs.pop(candidate.id, None)
        if self._writes:
            self.checkpoint_path(candidate).unlink(missing_ok=True)

    def _emit(self, event: str, record: CandidateRecord) -> None:
        if self._round is not None:
            self._round.events.append(event)
        elif self.on_event is not None and self.ranks.is_main:
            self.on_event(event, record)

    # ------------------------------------------------------------------------------------- prediction

    def finished_curves(self) -> list[Curve]:
        return [Curve(self.candidates[record.id], tuple(record.steps), tuple(record.scores))
                for record in self.state.finished()]

    def predictor(self) -> FinalScorePredictor:
        """The predictor fit on every finished curve (refit only when another candidate has finished)."""
        curves = self.finished_curves()
        key = tuple(curve.candidate.id for curve in curves)
        if self._predictor is None or key != self._predictor_curves:
            settings = self.settings
            self._predictor = FinalScorePredictor(self.encoder, self.space.steps, method=settings.method,
                                                  n_models=settings.n_models, min_std=settings.min_std,
                                                  min_points=settings.min_points, trend_weight=settings.trend_weight,
                                                  seed=self.space.seed).fit(curves)
            self._predictor_curves = key
        return self._predictor

    def _predictive_rule(self, candidate: Candidate, record: CandidateRecord) -> str | None:
        """Stop when P(final > best final so far + min_improvement) < threshold."""
        best = self.state.best
        if best is None or len(record.steps) < self.settings.min_points or record.id == best.id:
            return None
        prediction = self.predictor().predict(Curve(candidate, tuple(record.steps), tuple(record.scores)))
        bar = best.final + self.settings.min_improvement
        chance = prediction.probability_above(bar)
        record.predictions.append({"step": record.steps[-1], "last": record.scores[-1], "mean": prediction.mean,
                                   "std": prediction.std, "p_beat_best": chance, "best": best.final})
        if chance < self.settings.threshold:
            margin = f" + {self.settings.min_improvement}" if self.settings.min_improvement else ""
            return (f"P(final > best {best.final:.4f}{margin}) = {chance:.3f} < {self.settings.threshold} "
                    f"(predicted {prediction.mean:.4f} +- {prediction.std:.4f})")
        return None
