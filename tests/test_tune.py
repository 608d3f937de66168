"""`st-pooling tune`: the mixture sampler, per-source losses, split hygiene, the never-worse rule, and the command.

Real components throughout (the packaged MiniLM, the shared benchmark data, the search session), at tiny sizes.
"""

from __future__ import annotations

import math
import random

import pytest
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.losses import CoSENTLoss, MultipleNegativesRankingLoss

import st_pooling  # noqa: F401  (registers the pooling modules for loading)
from st_pooling.cli import main
from st_pooling.data import shared_data_dir
from st_pooling.sweep.space import space_from_options
from st_pooling.sweep.strategies import SearchSession, settings_for
from st_pooling.tuning.data import (DEFAULT_WEIGHTS, LocalCISITestShare, LocalCranfieldTestShare, build_dev_suite,
                                    build_mixture, ir_query_split, load_splits)
from st_pooling.tuning.mixture import MixtureTrainer

pytestmark = pytest.mark.skipif(shared_data_dir() is None, reason="needs the shared benchmark data")


@pytest.fixture(scope="module")
def splits():
    return load_splits()


@pytest.fixture(scope="module")
def mixture(splits):
    return build_mixture(splits, max_train=32)


@pytest.fixture(scope="module")
def dev(splits):
    return build_dev_suite(splits, max_dev=40, support_per_label=2, ir_distractors=30)


@pytest.fixture(scope="module")
def shared_trainer(mixture, dev):
    """One trainer whose frozen base and feature caches (every mixture and dev text) the tests share."""
    return MixtureTrainer(tiny_space("weighted_sum", 1e-3), mixture, dev, native="mean", n_resamples=200)


def tiny_space(pooling: str, lr: float, steps: int = 8):
    return space_from_options([pooling], [lr], base="minilm", max_seq_length=32, train="tune-mixture",
                              dev="tune-dev", loss="cosent", batch_size=16, steps=steps, eval_every=steps // 4)


def test_sampler_draws_sources_in_proportion(mixture):
    """Each source's share of 20,000 draws lies within 4 binomial standard errors of weight / total weight
    (a false alarm has probability below 1e-4 per source)."""
    n, rng = 20_000, random.Random(0)
    counts = {source.name: 0 for source in mixture.sources}
    for _ in range(n):
        counts[mixture.draw(rng).name] += 1
    assert set(mixture.probabilities) == set(DEFAULT_WEIGHTS)
    for name, p in mixture.probabilities.items():
        tolerance = 4 * math.sqrt(p * (1 - p) / n)
        assert abs(counts[name] / n - p) < tolerance, (name, counts[name] / n, p)


def test_each_source_trains_with_its_own_loss(mixture, shared_trainer):
    run = shared_trainer.start(shared_trainer.space.candidates[0])
    for source in mixture.sources:
        expected = CoSENTLoss if source.name in ("stsb", "sick") else MultipleNegativesRankingLoss
        assert type(run.losses[source.name]) is expected, source.name
        assert source.loss == ("cosent" if expected is CoSENTLoss else "mnrl")
    assert mixture.sources[2].data.kind == "triplets"  # sick-nli: entailment positive, contradiction negative
    before = {k: v.clone() for k, v in run.head.state_dict().items()}
    for _ in range(24):
        run.train_step()
    assert sum(run.drawn.values()) == 24 and sum(1 for v in run.drawn.values() if v) >= 4
    assert any((before[k] != v).any() for k, v in run.head.state_dict().items())


def test_ir_train_dev_test_shares_are_disjoint(splits, mixture):
    for name in ("cranfield", "cisi"):
        data = splits.ir[name]
        shares = ir_query_split(data)
        train, dev_ids, test = (set(shares[k]) for k in ("train", "dev", "test"))
        assert not (train & dev_ids or train & test or dev_ids & test)
        assert train | dev_ids | test == set(data.relevant_query_ids)
        assert ir_query_split(data) == shares  # fixed: the same split every time
        source = next(s for s in mixture.sources if s.name == name)
        test_texts = {data.queries[q] for q in test} | {data.queries[q] for q in dev_ids}
        assert not set(source.data.anchors) & test_texts
    cranfield_test = LocalCranfieldTestShare().local_data()
    assert set(cranfield_test.queries) == set(ir_query_split(splits.ir["cranfield"])["test"])
    assert set(LocalCISITestShare().local_data().queries) == set(ir_query_split(splits.ir["cisi"])["test"])
    from st_pooling.evaluation.tasks import LocalCranfield
    assert len(LocalCranfield().local_data().queries) == len(splits.ir["cranfield"].queries)  # unchanged task


def test_classification_train_and_dev_shares_are_disjoint(splits, mixture, dev):
    for name, (train, held_out) in splits.labelled.items():
        assert not set(train.train_texts) & set(held_out.test_texts), name
        source = next(s for s in mixture.sources if s.name == name)
        assert not set(source.data.texts()) & set(held_out.test_texts), name
    for name, (support, items) in dev.classification.items():
        assert not set(support.train_texts) & set(items.test_texts), name


def _search(space, shared, tmp_path):
    trainer = MixtureTrainer(space, shared.mixture, shared.dev, native="mean", n_resamples=200)
    trainer._transformers, trainer._caches = shared._transformers, shared._caches  # same texts, same base
    SearchSession(space, trainer, tmp_path / "search", "all", settings_for("all")).run()
    return trainer


def test_never_worse_keeps_the_native_pooling_when_every_candidate_is_worse(shared_trainer, tmp_path):
    # a deliberately bad learning rate (the search space allows lr < 1 only): the head leaves the native pooling far
    trainer = _search(tiny_space("weighted_sum", 0.9, steps=16), shared_trainer, tmp_path)
    assert trainer.verdicts, "the search evaluated nothing"
    assert trainer.best is None and trainer.winner_model() is None


def test_never_worse_keeps_a_better_candidate(shared_trainer, tmp_path):
    trainer = _search(tiny_space("weighted_sum", 1e-2, steps=16), shared_trainer, tmp_path)
    native = trainer.native_dev_scores()
    assert trainer.best is not None
    assert trainer.best.overall > sum(s.full_score() for s in native.values()) / len(native)
    assert not trainer.best.worse_types
    model = trainer.winner_model()
    assert model.encode(["a sentence"]).shape == (1, 384)


def test_tune_command_end_to_end(tmp_path, capsys):
    output = tmp_path / "tune"
    code = main(["tune", "--output", str(output), "--heads", "weighted_sum", "--lrs", "1e-2", "--steps", "8",
                 "--eval-every", "2", "--max-train", "32", "--max-dev", "40", "--ir-distractors", "30",
                 "--max-items", "20", "--max-seq-length", "32", "--n-resamples", "200"])
    printed = capsys.readouterr().out
    assert code == 0
    assert (output / "tune_report.md").is_file() and (output / "tune.json").is_file()
    if (output / "model").is_dir():
        model = SentenceTransformer(str(output / "model"))
        assert model.encode(["hello world"]).shape == (1, 384)
        assert "saved the tuned model" in printed and "## Test" in printed
    else:
        assert "kept the native pooling" in printed


def test_native_must_be_a_parameter_free_pooling(tmp_path, capsys):
    output = tmp_path / "tune"
    assert main(["tune", "--output", str(output), "--native", "gem"]) == 2
    error = capsys.readouterr().err
    assert "--native 'gem'" in error and "parameter-free" in error and "weighted_mean" in error
    assert not output.exists()


def test_lora_candidates_train_adapters_and_head_from_the_native_start(shared_trainer, tmp_path):
    """tune --lora-rank: each candidate adapts a base of its own (LoRA) beside its head, live; step 0 is still the
    native pooling of the base as it was; a checkpoint restores both; the kept weights make a model that saves and
    reloads; its test comparison runs the native pooling on the unadapted base."""
    import numpy as np
    import torch

    from st_pooling.evaluation.tasks import get_tasks
    from st_pooling.tuning.tune import evaluate_on_tests

    space = tiny_space("weighted_sum", 1e-2).with_overrides(lora_rank=4, lora_learning_rate=1e-3)
    trainer = MixtureTrainer(space, shared_trainer.mixture, shared_trainer.dev, native="mean", n_resamples=200)
    run = trainer.start(space.candidates[0])
    texts = shared_trainer.dev.texts()[:24]
    native = shared_trainer.native_model().encode(texts)
    np.testing.assert_allclose(run.embedder.encode(texts), native, atol=1e-6)  # LoRA B = 0 and the native start
    before = run.training.trained_weights()
    run.train_to(4)
    after = run.training.trained_weights()
    moved = {name for name in before if not torch.equal(before[name], after[name])}
    assert any(name.startswith("base.") and "lora_" in name for name in moved)
    assert any(name.startswith("head.") for name in moved)
    assert not any(name.startswith("base.") and "lora_" not in name for name in after)  # the base's own weights stay
    assert np.abs(run.embedder.encode(texts) - native).max() > 1e-4
    assert shared_trainer.native_model()[0] is not run.model[0]  # each candidate adapts a base of its own

    run.save_checkpoint(tmp_path / "checkpoint.pt")
    resumed = trainer.start(space.candidates[0])
    resumed.load_checkpoint(tmp_path / "checkpoint.pt")
    assert resumed.step == 4
    np.testing.assert_allclose(resumed.embedder.encode(texts), run.embedder.encode(texts), atol=1e-6)

    trainer.best, trainer.best_state = trainer.judge(run), run.training.trained_weights()  # keep this point
    model = trainer.winner_model()
    np.testing.assert_allclose(model.encode(texts), run.embedder.encode(texts), atol=1e-5)
    model.save(str(tmp_path / "model"))
    assert (tmp_path / "model" / "adapter_config.json").is_file()
    np.testing.assert_allclose(SentenceTransformer(str(tmp_path / "model")).encode(texts), model.encode(texts),
                               atol=1e-5)

    tasks = get_tasks(["LeeSTS"], max_items=24)
    comparison = evaluate_on_tests(model, "minilm", "mean", "tuned", tasks, tmp_path / "test", n_resamples=100)
    plain = evaluate_on_tests(shared_trainer.native_model(), "minilm", "mean", "tuned", tasks, tmp_path / "plain",
                              n_resamples=100)
    assert comparison.scores["mean"]["LeeSTS"] == pytest.approx(plain.scores["mean"]["LeeSTS"], abs=1e-9)
    assert comparison.scores["tuned"]["LeeSTS"] != pytest.approx(plain.scores["tuned"]["LeeSTS"], abs=1e-6)


def test_tune_command_with_lora(tmp_path, capsys):
    import json

    output = tmp_path / "tune"
    code = main(["tune", "--output", str(output), "--heads", "weighted_sum", "--lrs", "1e-2", "--steps", "4",
                 "--eval-every", "1", "--max-train", "16", "--max-dev", "20", "--ir-distractors", "10",
                 "--max-seq-length", "32", "--n-resamples", "100", "--no-test", "--lora-rank", "2", "--lora-lr",
                 "1e-3"])
    assert code == 0
    saved = json.loads((output / "tune.json").read_text())
    assert saved["space"]["lora_rank"] == 2 and saved["space"]["lora_learning_rate"] == 1e-3
    assert saved["cache_seconds"] == 0  # live: nothing cached
    assert "LoRA adapters of rank 2" in capsys.readouterr().out
    if (output / "model").is_dir():
        assert (output / "model" / "adapter_config.json").is_file()
