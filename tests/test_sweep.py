"""`st-pooling sweep` on the packaged MiniLM with real STS-B data (small subsets, few steps, max_seq_length 48).

The learning curves are real: every candidate is trained on cached features of the frozen MiniLM and evaluated on a
STS-B dev subset. One session-wide trainer builds the token-state cache once; the tests reuse it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from st_pooling.data.paths import shared_data_dir
from st_pooling.sweep import (
    Curve,
    FinalScorePredictor,
    HalvingSettings,
    PredictiveSettings,
    SearchSession,
    SearchSpaceError,
    SearchTrainer,
    check_steps,
    load_space,
    rung_budgets,
    search_order,
    space_from_dict,
    space_from_options,
)
from st_pooling.sweep.curves import ConfigEncoder, curve_features
from st_pooling.sweep.predictor import leave_one_curve_out

pytestmark = pytest.mark.skipif(shared_data_dir() is None or not (shared_data_dir() / "stsbenchmark").is_dir(),
                                reason="needs the shared STS Benchmark data")

TINY = {"max_train": 160, "max_dev": 100, "max_seq_length": 48, "batch_size": 16, "seed": 0}
CURVE_SPACE = {**TINY, "native_start": False, "steps": 30, "eval_every": 5, "candidates": [
    {"pooling": "gem", "lr": [0.03, 0.1, 0.3]},
    {"pooling": "group_gem", "lr": [0.1, 0.3]},
    {"pooling": "latent_attention", "num_latents": [2, 4], "ffn_multiplier": 1, "lr": [1e-3, 3e-3]},
    {"pooling": "weighted_sum", "lr": [1e-3]},
]}
RESUME_SPACE = {**TINY, "steps": 12, "eval_every": 4, "candidates": [
    {"pooling": "weighted_sum", "lr": [1e-2, 1e-1]},
    {"pooling": "gem", "lr": 0.3},
    {"pooling": "latent_attention", "num_latents": 2, "ffn_multiplier": 1, "lr": 1e-3},
]}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small head ops run fastest on one thread on a shared machine; restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def curve_trainer() -> SearchTrainer:
    return SearchTrainer(space_from_dict(CURVE_SPACE), device="cpu")


@pytest.fixture(scope="module")
def full_curves(curve_trainer, tmp_path_factory) -> list[Curve]:
    """Real learning curves: every candidate of CURVE_SPACE trained to the end."""
    session = SearchSession(curve_trainer.space, curve_trainer, tmp_path_factory.mktemp("all"), "all")
    session.run()
    return session.finished_curves()


@pytest.fixture(scope="module")
def resume_trainer() -> SearchTrainer:
    return SearchTrainer(space_from_dict(RESUME_SPACE), device="cpu")


# ----------------------------------------------------------------------------------------- the predictor


def test_predictor_tracks_held_out_real_curves_as_well_as_the_last_value(full_curves):
    """On these short curves (30 steps, most flat after the first point) the forest is level with the last value
    observed: over forest seeds 0-4 its MAE was 0.0116-0.0128 against 0.0121 (so a bare "beats" flips with the
    machine's float rounding); the benchmark's longer curves are where it gains (docs/sweep.md). What must hold: the
    held-out predictions track the finals and are never much worse than the baseline."""
    space = space_from_dict(CURVE_SPACE)
    assert len(full_curves) == 10 and all(curve.steps == tuple(space.eval_steps) for curve in full_curves)
    encoder = ConfigEncoder(space.candidates)

    def make() -> FinalScorePredictor:
        return FinalScorePredictor(encoder, space.steps, method="forest", seed=0)

    held_out = leave_one_curve_out(full_curves, make, lengths=range(2, len(space.eval_steps)))
    assert len(held_out.actual) == 10 * (len(space.eval_steps) - 2)
    assert held_out.mae < 1.15 * held_out.last_value_mae, held_out.summary()
    assert held_out.r2 > 0.9 and held_out.r2 > held_out.last_value_r2 - 0.02, held_out.summary()


def test_svr_predictor_ranks_held_out_curves(full_curves):
    """The SVR alternative tracks held-out final scores (rank correlation), though on these curves (clipped steps, the
    trainer's batch order) it does not beat the last value observed, which the default forest does (see above and
    docs/sweep.md)."""
    from scipy.stats import spearmanr

    space = space_from_dict(CURVE_SPACE)
    encoder = ConfigEncoder(space.candidates)
    held_out = leave_one_curve_out(full_curves, lambda: FinalScorePredictor(encoder, space.steps, method="svr"),
                                   lengths=range(2, len(space.eval_steps)))
    assert np.isfinite(held_out.predicted).all()
    assert spearmanr(held_out.predicted, held_out.actual).statistic > 0.8, held_out.summary()


def test_prediction_uncertainty_is_wider_with_fewer_curves(full_curves):
    space = space_from_dict(CURVE_SPACE)
    encoder = ConfigEncoder(space.candidates)
    target = full_curves[-1].prefix(3)
    few = FinalScorePredictor(encoder, space.steps, min_std=1e-4).fit(full_curves[:2]).predict(target)
    many = FinalScorePredictor(encoder, space.steps, min_std=1e-4).fit(full_curves[:-1]).predict(target)
    assert few.std > 0 and many.std > 0
    assert few.probability_above(few.mean) == pytest.approx(0.5)
    assert few.probability_above(few.mean + 3 * few.std) < 0.01
    whole = FinalScorePredictor(encoder, space.steps).fit(full_curves[:-1]).predict(full_curves[-1])
    assert whole.mean == full_curves[-1].final  # a finished curve is its own final score


def test_trend_term_keeps_a_rising_curve_uncertain_while_few_curves_are_finished(full_curves):
    space = space_from_dict(CURVE_SPACE)
    encoder = ConfigEncoder(space.candidates)
    rising = [(curve, length) for curve in full_curves for length in range(2, len(curve.scores) - 1)
              if curve.scores[length - 1] - curve.scores[length - 2] > 0.002]
    assert rising, "no real curve rises by 0.002 between two points"
    curve, length = rising[0]
    others = [other for other in full_curves if other is not curve]

    def std(curves, trend_weight):
        predictor = FinalScorePredictor(encoder, space.steps, trend_weight=trend_weight).fit(curves)
        return predictor.predict(curve.prefix(length)).std, predictor.trend_gain(curve.prefix(length))

    plain, gain = std(others[:1], 0.0)
    widened, _ = std(others[:1], 1.0)
    assert gain > 0 and widened >= gain > plain  # one finished curve: the slope-continuation gain is within 1 std
    many_plain, _ = std(others, 0.0)
    many, _ = std(others, 1.0)
    assert many - many_plain < widened - plain  # the term fades as finished curves accumulate
    # the floor of the uncertainty shrinks to 0 at the end of the run, where the final score is known
    flat = FinalScorePredictor(encoder, space.steps, trend_weight=0.0, min_std=0.01, n_models=2).fit(others[:1])
    assert flat.predict(curve.prefix(len(curve.scores) - 1)).std < flat.predict(curve.prefix(2)).std


def test_curve_features_read_values_and_differences():
    features = curve_features([0.5, 0.6, 0.65], [0, 10, 20], total_steps=40)
    names = ("progress", "last", "previous", "first_difference", "second_difference")
    assert dict(zip(names, features[:5])) == pytest.approx(
        {"progress": 0.5, "last": 0.65, "previous": 0.6, "first_difference": 0.05, "second_difference": -0.05})
    with pytest.raises(ValueError, match="two"):
        curve_features([0.5], [0], total_steps=40)


# ----------------------------------------------------------------------------------------- strategies


def test_predictive_search_stops_candidates_and_saves_the_best(curve_trainer, full_curves, tmp_path):
    from sentence_transformers import SentenceTransformer

    import st_pooling  # noqa: F401  (registers the pooling modules for loading)

    space = curve_trainer.space
    settings = PredictiveSettings(n_bootstrap=2, threshold=0.05, first_check=5)
    assert check_steps(space, settings) == [0, 5, 10, 20, 30]
    session = SearchSession(space, curve_trainer, tmp_path, "predictive", settings)
    state = session.run()
    finals = {curve.candidate.id: curve.final for curve in full_curves}
    stopped = [record for record in state.records.values() if record.status == "stopped"]
    assert stopped and all(record.stop_reason.startswith("P(final > best") for record in stopped)
    assert state.steps_used < space.full_compute_steps
    # warm-up: every candidate reached the first check; the two best there were trained to the end
    assert all(record.steps[:2] == [0, 5] for record in state.records.values())
    at_first = sorted(state.records.values(), key=lambda record: -record.scores[1])
    assert all(record.status == "finished" for record in at_first[:2])
    for record in state.records.values():  # a stopped curve is the start of the full curve (same seed, schedule)
        reference = next(curve for curve in full_curves if curve.candidate.id == record.id)
        full = dict(zip(reference.steps, reference.scores))
        assert record.scores == pytest.approx([full[step] for step in record.steps], abs=1e-6)
    # the untrained head is evaluated once per pooling (its score does not depend on the learning rate)
    first_of_head = {}
    for candidate in search_order(space):
        first_of_head.setdefault(candidate.head_key, candidate.id)
    for candidate in space.candidates:
        record = state.records[candidate.id]
        assert record.evaluations == len(record.steps) - (first_of_head[candidate.head_key] != candidate.id)
        assert record.scores[0] == state.records[first_of_head[candidate.head_key]].scores[0]
    assert state.best.final == pytest.approx(max(finals[r.id] for r in state.finished()), abs=1e-9)
    model = SentenceTransformer(str(session.best_model_dir))
    best = space.candidates[[c.id for c in space.candidates].index(state.best_id)]
    assert type(model[1]).name == best.pooling
    saved = json.loads((session.best_model_dir / "search_candidate.json").read_text())
    assert saved["dev_curve_scores"][-1] == pytest.approx(state.best.final, abs=1e-5)
    emb = model.encode(["A man plays a guitar.", "A man is playing the guitar.", "Stocks fell sharply."])
    assert emb[0] @ emb[1] > emb[0] @ emb[2]


def test_successive_halving_keeps_the_best_third_per_rung(curve_trainer, tmp_path):
    space = curve_trainer.space
    budgets = rung_budgets(space, HalvingSettings(eta=3))
    assert budgets == [5, 10, 30]  # 30 / 9 and 30 / 3 rounded to the eval grid of 5 steps
    state = SearchSession(space, curve_trainer, tmp_path, "halving", HalvingSettings(eta=3)).run()
    trained = sorted(record.steps_trained for record in state.records.values())
    assert trained == [5] * 7 + [10] * 2 + [30]  # 10 -> 3 -> 1
    assert state.steps_used == 7 * 5 + 2 * 10 + 30
    for record in state.records.values():  # evaluated only where halving reads the score: at its rung ends
        assert record.steps == [budget for budget in budgets if budget <= record.steps_trained]
    assert state.evaluations_used == 10 + 3 + 1
    winners = [r for r in state.records.values() if r.steps_trained >= 10]
    losers = [r for r in state.records.values() if r.steps_trained == 5]
    assert min(r.scores[r.steps.index(5)] for r in winners) >= max(r.scores[-1] for r in losers)


def test_interrupted_search_continues_without_losing_finished_candidates(resume_trainer, tmp_path):
    space = resume_trainer.space
    # in search order, checks on the eval grid (0, 4, 8, 12): first decision at step 8
    settings = PredictiveSettings(n_bootstrap=1, threshold=0.2, min_points=3, first_check=4, warm_up=False)
    reference = SearchSession(space, resume_trainer, tmp_path / "reference", "predictive", settings).run()

    events: list[tuple[str, str, int]] = []
    order = [candidate.id for candidate in search_order(space)]

    def interrupt_in_third_candidate(event: str, record) -> None:
        events.append((event, record.id, record.steps_trained))
        if record.id == order[2] and event == "point" and record.steps_trained == 4:
            raise KeyboardInterrupt  # as a Ctrl-C right after the state was written

    folder = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        SearchSession(space, resume_trainer, folder, "predictive", settings,
                      on_event=interrupt_in_third_candidate).run()
    saved = json.loads((folder / "state.json").read_text())
    done_before = {r["id"]: r for r in saved["records"] if r["status"] in ("finished", "stopped")}
    assert set(done_before) == set(order[:2])
    assert (folder / "checkpoints" / f"{order[2]}.pt").is_file()

    events.clear()
    resumed = SearchSession(space, resume_trainer, folder, "predictive", settings,
                            on_event=lambda event, record: events.append((event, record.id, record.steps_trained)))
    assert resumed.resumed
    state = resumed.run()
    assert not [e for e in events if e[1] in done_before]  # finished candidates are not trained again
    assert events[0][1:] == (order[2], 8)  # the interrupted candidate continues from its checkpoint (step 4)
    assert events[0][0] in ("point", "stopped")
    for candidate_id, before in done_before.items():
        after = state.records[candidate_id]
        assert (after.status, after.steps, after.scores) == (before["status"], before["steps"], before["scores"])
    for candidate_id, record in reference.records.items():  # same decisions, same curves as without interruption
        after = state.records[candidate_id]
        assert (after.status, after.steps) == (record.status, record.steps)
        assert after.scores == pytest.approx(record.scores, abs=1e-6)
    assert state.best_id == reference.best_id
    assert not list((folder / "checkpoints").glob("*.pt"))


def test_search_interrupted_after_its_warm_up_continues_where_it_stopped(resume_trainer, tmp_path):
    space = resume_trainer.space
    settings = PredictiveSettings(n_bootstrap=1, threshold=0.2, min_points=3, first_check=4)  # checks 0, 4, 8, 12
    reference = SearchSession(space, resume_trainer, tmp_path / "reference", "predictive", settings).run()
    ranked = sorted(search_order(space), key=lambda c: -reference.records[c.id].scores[1])
    assert reference.records[ranked[0].id].status == "finished"  # the best at the first check is the bootstrap run

    def interrupt_the_bootstrap_run(event: str, record) -> None:
        if record.id == ranked[0].id and event == "point" and record.steps_trained == 8:
            raise KeyboardInterrupt

    folder = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        SearchSession(space, resume_trainer, folder, "predictive", settings,
                      on_event=interrupt_the_bootstrap_run).run()
    saved = {r["id"]: r for r in json.loads((folder / "state.json").read_text())["records"]}
    assert all(saved[c.id]["status"] == "paused" and saved[c.id]["steps"] == [0, 4] for c in ranked[1:])
    events: list[tuple[str, str, int]] = []
    state = SearchSession(space, resume_trainer, folder, "predictive", settings,
                          on_event=lambda event, record: events.append((event, record.id, record.steps_trained))
                          ).run()
    assert events[0] == ("finished", ranked[0].id, 12)  # continued from its checkpoint at step 8
    assert all(steps >= 8 for _, _, steps in events)  # the warm-up was not run again
    for candidate_id, record in reference.records.items():
        after = state.records[candidate_id]
        assert (after.status, after.steps, after.evaluations) == (record.status, record.steps, record.evaluations)
        assert after.scores == pytest.approx(record.scores, abs=1e-6)
    assert state.best_id == reference.best_id


def test_state_of_an_older_version_is_refused_clearly(resume_trainer, tmp_path):
    space = resume_trainer.space
    session = SearchSession(space, resume_trainer, tmp_path, "predictive", PredictiveSettings())
    payload = session.state.to_dict() | {"version": 1}
    session.state_path.write_text(json.dumps(payload))
    with pytest.raises(ValueError, match="another version of st-pooling sweep"):
        SearchSession(space, resume_trainer, tmp_path, "predictive", PredictiveSettings())
    assert json.loads(session.state_path.read_text()) == payload


def test_resuming_with_another_space_refuses_and_keeps_the_state(resume_trainer, tmp_path):
    space = resume_trainer.space
    settings = PredictiveSettings(n_bootstrap=1)
    session = SearchSession(space, resume_trainer, tmp_path, "predictive", settings)
    session.state.save(session.state_path)
    before = session.state_path.read_bytes()
    with pytest.raises(ValueError, match="differs in the search space"):
        SearchSession(space.with_overrides(steps=16), resume_trainer, tmp_path, "predictive", settings)
    with pytest.raises(ValueError, match="strategy"):
        SearchSession(space, resume_trainer, tmp_path, "halving", HalvingSettings())
    assert session.state_path.read_bytes() == before


def interrupt_at_step_4(trainer, folder: Path) -> Path:
    """Run the search until its first candidate's point at step 4, then interrupt it: its checkpoint path."""

    def stop_at_step_4(event: str, record) -> None:
        if event == "point" and record.steps_trained == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        SearchSession(trainer.space, trainer, folder, "all", on_event=stop_at_step_4).run()
    return folder / "checkpoints" / f"{search_order(trainer.space)[0].id}.pt"


def test_unusable_checkpoint_restarts_that_candidate_from_its_start(resume_trainer, tmp_path):
    space = resume_trainer.space
    checkpoint = interrupt_at_step_4(resume_trainer, tmp_path)
    first = search_order(space)[0]
    checkpoint.write_bytes(b"not a checkpoint, half written")  # e.g. a disk that filled up
    events = []
    state = SearchSession(space, resume_trainer, tmp_path, "all",
                          on_event=lambda event, record: events.append((event, record.id, record.steps_trained))
                          ).run()
    assert events[0] == ("point", first.id, 0)
    assert all(record.status == "finished" for record in state.records.values())


# ----------------------------------------------------------------------------------------- the search space


def test_space_file_expands_grids(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(
        "steps: 40\neval_every: 10\ncandidates:\n"
        "  - {pooling: gem, lr: [0.01, 0.1]}\n"
        "  - {pooling: mltp, layers: [[1, 2, 3, 4, 5, 6], [4, 5, 6]], num_latents: [4, 8], lr: 0.001}\n")
    space = load_space(path)
    assert len(space.candidates) == 2 + 4
    assert space.eval_steps == [0, 10, 20, 30, 40] and space.full_compute_steps == 240
    assert {tuple(c.options["layers"]) for c in space.candidates if c.pooling == "mltp"} == {(1, 2, 3, 4, 5, 6),
                                                                                           (4, 5, 6)}
    json_path = tmp_path / "space.json"
    json_path.write_text(json.dumps(space_from_dict({"steps": 40, "eval_every": 10, "candidates": [
        {"pooling": "gem", "lr": [0.01, 0.1]}]}).to_dict() | {"candidates": [{"pooling": "gem", "lr": 0.01}]}))
    assert len(load_space(json_path).candidates) == 1
    assert space.fingerprint() != space.with_overrides(max_train=10).fingerprint()
    assert len(space_from_options(["gem", "latent_attention:num_latents=4"], [1e-3, 1e-2]).candidates) == 4
    # settings added later enter the fingerprint only when set: a search saved before them still resumes
    assert space.fingerprint() == space.with_overrides(lora_rank=None, lora_learning_rate=1e-4).fingerprint()
    lora = space.with_overrides(lora_rank=8)
    yaml_path = tmp_path / "lora.yaml"  # YAML 1.1 reads 1e-4 as a string; the space reads it as the number
    yaml_path.write_text("lora_rank: 4\nlora_learning_rate: 1e-4\ncandidates:\n  - {pooling: gem, lr: 1e-3}\n")
    assert load_space(yaml_path).lora_learning_rate == 1e-4
    assert lora.fingerprint() not in {space.fingerprint(), lora.with_overrides(lora_learning_rate=3e-4).fingerprint()}
    assert space.candidates[0].spec.pooling == space.candidates[0].pooling == "gem"  # the one PoolingSpec


@pytest.mark.parametrize("text, message", [
    ("candidates: [\n", "not valid YAML"),
    ("steps: 40\n", "needs a non-empty 'candidates'"),
    ("candidates:\n  - {pooling: nope, lr: 0.1}\n", "unknown pooling 'nope'"),
    ("candidates:\n  - {pooling: mean, lr: 0.1}\n", "no learnable parameters"),
    ("candidates:\n  - {pooling: gem}\n", "gives no lr"),
    ("candidates:\n  - {pooling: gem, lr: [0.1, -1]}\n", "lr must lie in"),
    ("candidates:\n  - {pooling: gem, lr: []}\n", "empty list of choices"),
    ("steps: 45\neval_every: 10\ncandidates:\n  - {pooling: gem, lr: 0.1}\n", "multiple of eval_every"),
    ("steps: 20\neval_every: 10\ncandidates:\n  - {pooling: gem, lr: 0.1}\n", "at least 3"),
    ("stpes: 20\ncandidates:\n  - {pooling: gem, lr: 0.1}\n", "unknown keys stpes"),
    ("- pooling: gem\n", "must hold a mapping"),
    ("lora_rank: 0\ncandidates:\n  - {pooling: gem, lr: 0.1}\n", "lora_rank"),
    ("lora_learning_rate: 2\ncandidates:\n  - {pooling: gem, lr: 0.1}\n", "lora_learning_rate: lr must lie in"),
    ("lora_learning_rate: fast\ncandidates:\n  - {pooling: gem, lr: 0.1}\n", "lora_learning_rate: lr must be a number"),
    ("native_start: gem\ncandidates:\n  - {pooling: gem, lr: 0.1}\n", "native_start: native must be a parameter-free"),
])
def test_bad_space_files_are_refused_clearly(tmp_path, text, message):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(SearchSpaceError, match=message):
        load_space(path)


def test_bad_pooling_options_fail_before_any_training(resume_trainer, tmp_path):
    space = space_from_dict({**TINY, "steps": 12, "eval_every": 4, "candidates": [
        {"pooling": "gem", "lr": 0.1}, {"pooling": "group_gem", "num_groups": 5, "lr": 0.1}]})
    trainer = SearchTrainer(space, device="cpu")
    with pytest.raises(SearchSpaceError, match="c01-group_gem.*does not divide"):
        SearchSession(space, trainer, tmp_path, "all").run()
    assert trainer.cache_seconds == 0.0  # nothing was cached or trained
    state = json.loads((tmp_path / "state.json").read_text()) if (tmp_path / "state.json").exists() else None
    assert state is None or all(record["steps"] == [] for record in state["records"])


# ----------------------------------------------------------------------------------------- the command line


def test_search_command_writes_model_table_and_png(tmp_path, capsys):
    from st_pooling.sweep.cli import add_sweep_command

    parser = argparse.ArgumentParser()
    add_sweep_command(parser.add_subparsers())
    space = tmp_path / "space.yaml"
    space.write_text("max_train: 64\nmax_dev: 60\nmax_seq_length: 32\nbatch_size: 16\nsteps: 12\neval_every: 4\n"
                     "candidates:\n  - {pooling: weighted_sum, lr: [0.001, 0.05]}\n  - {pooling: gem, lr: 0.1}\n")
    output = tmp_path / "search"
    args = parser.parse_args(["sweep", "--space", str(space), "--output", str(output), "--strategy", "halving",
                              "--eta", "2", "--threads", "1", "--quiet"])
    assert args.handler(args) == 0
    summary = json.loads((output / "summary.json").read_text())
    assert summary["strategy"] == "halving" and summary["candidates"] == 3
    assert summary["steps_used"] == 3 * 8 + 1 * 4 and summary["steps_train_all"] == 36  # rungs of 8 and 12 steps
    report = (output / "report.md").read_text()
    assert report.count("| c0") == 3 and "finished ★" in report
    assert (output / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (output / "best_model" / "modules.json").is_file()
    card = (output / "best_model" / "README.md").read_text()
    assert "pip install st-pooling" in card and "import st_pooling" in card
    assert "st-pooling sweep: halving" in capsys.readouterr().out
    with pytest.raises(SearchSpaceError, match="not both"):
        args = parser.parse_args(["sweep", "--space", str(space), "--poolings", "gem", "--lrs", "0.1",
                                  "--output", str(tmp_path / "x")])
        args.handler(args)


def test_predictor_refuses_nonsense():
    encoder = ConfigEncoder(space_from_dict({"candidates": [{"pooling": "gem", "lr": 0.1}]}).candidates)
    with pytest.raises(ValueError, match="method"):
        FinalScorePredictor(encoder, 10, method="magic")
    with pytest.raises(ValueError, match="finished curve"):
        FinalScorePredictor(encoder, 10).fit([])
    assert np.isfinite(encoder.encode(space_from_dict({"candidates": [{"pooling": "gem", "lr": 0.1}]}
                                                      ).candidates[0])).all()


def test_min_improvement_never_costs_more_compute_and_is_reported(curve_trainer, tmp_path):
    space = curve_trainer.space
    plain = SearchSession(space, curve_trainer, tmp_path / "plain", "predictive",
                          PredictiveSettings(n_bootstrap=2)).run()
    margin = SearchSession(space, curve_trainer, tmp_path / "margin", "predictive",
                           PredictiveSettings(n_bootstrap=2, min_improvement=0.05)).run()
    assert margin.steps_used <= plain.steps_used
    stopped = [record for record in margin.records.values() if record.status == "stopped"]
    assert stopped and all("+ 0.05)" in record.stop_reason for record in stopped)
    with pytest.raises(ValueError, match="min_improvement"):
        PredictiveSettings(min_improvement=-0.01)


class _RunsAShellCommand:
    """A pickle that, when unpickled without restriction, creates a file: the planted checkpoint of issue 15."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_a_planted_pickle_checkpoint_is_refused_not_executed(resume_trainer, tmp_path, caplog):
    space = resume_trainer.space
    checkpoint = interrupt_at_step_4(resume_trainer, tmp_path)
    marker = tmp_path / "code-ran"
    torch.save({"candidate": _RunsAShellCommand(marker)}, checkpoint)
    with caplog.at_level("WARNING", logger="st_pooling.sweep.strategies"):
        state = SearchSession(space, resume_trainer, tmp_path, "all").run()
    assert not marker.exists(), "resuming the search executed the planted pickle"
    assert str(checkpoint) in caplog.text and "trained again from its start" in caplog.text
    assert all(record.status == "finished" for record in state.records.values())
