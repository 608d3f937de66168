"""Training: data readers, losses, the trainer API (head / full / LoRA), the frozen-feature fast path and its
equality with the live pipeline. Real MiniLM, real ST trainer and losses, real files from ../shared/data."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer

import st_pooling
from st_pooling.data import DataFormatError, shared_data_dir
from st_pooling.data.types import ClassificationData
from st_pooling.training import (
    CachedHeadEmbedder,
    PairData,
    ScoredPairData,
    TrainConfig,
    build_feature_cache,
    load_training_data,
    make_loss,
    read_training_file,
    same_label_pairs,
    sick_nli_pairs,
    stsb_scored_pairs,
    train_head_on_cache,
    train_model,
)
from st_pooling.training.fast_path import cosine_spearman

MAX_SEQ = 32
HAS_PEFT = importlib.util.find_spec("peft") is not None


def data_folder(name: str) -> Path:
    root = shared_data_dir()
    if root is None or not (root / name).is_dir():
        pytest.skip(f"the shared data folder {name}/ is absent (set ST_POOLING_DATA_DIR)")
    return root / name


@pytest.fixture(scope="module")
def stsb_small() -> tuple[ScoredPairData, ScoredPairData]:
    folder = data_folder("stsbenchmark")
    return stsb_scored_pairs(folder, "train").subset(64, seed=1), stsb_scored_pairs(folder, "dev").subset(48)


def build(pooling: str, **options):
    return st_pooling.build_model("minilm", pooling, max_seq_length=MAX_SEQ, device="cpu", **options)


# ----------------------------------------------------------------------------- readers


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_user_files_in_every_format(tmp_path):
    jsonl = write(tmp_path, "p.jsonl", '{"anchor": "a one", "positive": "p one"}\n\n'
                                       '{"query": "a two", "positive": "p two"}\n')
    pairs = read_training_file(jsonl)
    assert isinstance(pairs, PairData) and pairs.kind == "pairs"
    assert pairs.anchors == ["a one", "a two"] and pairs.positives == ["p one", "p two"]
    tsv = write(tmp_path, "t.tsv", 'anchor\tpositive\tnegative\nhe said "hi"\thello\tbye\nx\ty\tz\n')
    triplets = read_training_file(tsv)
    assert triplets.kind == "triplets" and triplets.anchors[0] == 'he said "hi"' and triplets.negatives == ["bye", "z"]
    csv_file = write(tmp_path, "s.csv", 'sentence1,sentence2,score\n"a, b",c,4.5\nd,e,1\n')
    scored = read_training_file(csv_file)
    assert isinstance(scored, ScoredPairData) and scored.texts1 == ["a, b", "d"] and scored.scores == [4.5, 1.0]
    assert list(scored.to_dataset().column_names) == ["sentence1", "sentence2", "score"]


@pytest.mark.parametrize("name, text, line, expected", [
    ("bad.jsonl", '{"anchor": "a", "positive": "b"}\n{"anchor": "a", "positive": \n', 2, "invalid JSON"),
    ("bad.jsonl", '{"anchor": "a", "positive": "b"}\n{"anchor": "", "positive": "b"}\n', 2,
     "non-empty text in column 'anchor'"),
    ("bad.csv", "text1,text2,score\na,b,1\nc,d,high\n", 3, "expected a number in column 'score'"),
    ("bad.tsv", "anchor\tpositive\na\tb\nc\n", 3, "expected 2 tab-separated columns"),
    ("bad.csv", "foo,bar\na,b\n", 1, "expected the columns (anchor, positive[, negative]) or (text1, text2, score)"),
    ("bad.jsonl", '{"anchor": "a", "positive": "b"}\n{"anchor": "c", "positive": "d", "negative": "e"}\n', 2,
     "same columns as line 1"),
])
def test_malformed_rows_name_file_line_and_expectation(tmp_path, name, text, line, expected):
    path = write(tmp_path, name, text)
    with pytest.raises(DataFormatError) as error:
        read_training_file(path)
    assert error.value.path == path and error.value.line == line
    assert expected in str(error.value) and f"{path}, line {line}" in str(error.value)


def test_unknown_source_and_file_type(tmp_path):
    with pytest.raises(ValueError, match="unknown training source 'nope'"):
        load_training_data("nope")
    with pytest.raises(DataFormatError, match="expected .jsonl, .csv or .tsv"):
        read_training_file(write(tmp_path, "x.txt", "a"))


def test_same_label_pairs_pair_texts_of_one_label():
    labels = ["a", "b", "c"] * 10 + ["lonely"]
    texts = [f"text {i} of {label}" for i, label in enumerate(labels)]
    data = ClassificationData(texts, labels, texts[:3], labels[:3])
    pairs = same_label_pairs(data, hard_negatives=True, seed=3)
    label_of = dict(zip(texts, labels))
    assert len(pairs) == 30  # the label with a single text cannot form a pair
    for anchor, positive, negative in zip(pairs.anchors, pairs.positives, pairs.negatives):
        assert anchor != positive and label_of[anchor] == label_of[positive] != label_of[negative]


def test_shared_benchmark_sources():
    stsb = load_training_data("stsb", data_dir=data_folder("stsbenchmark").parent)
    assert isinstance(stsb, ScoredPairData) and len(stsb) == 5749
    assert len(load_training_data("stsb:dev", data_dir=data_folder("stsbenchmark").parent)) == 1500
    sick = load_training_data("sick", data_dir=data_folder("sick").parent)
    assert isinstance(sick, ScoredPairData) and len(sick) == 4439
    nli = sick_nli_pairs(data_folder("sick"))
    assert nli.kind == "triplets" and len(nli) > 50
    plain = sick_nli_pairs(data_folder("sick"), hard_negatives=False)
    assert plain.kind == "pairs" and len(plain) > len(nli)
    rows = (data_folder("sick") / "SICK_original_12col.txt").read_text(encoding="utf-8").split("\n")
    labelled = {(c[1].strip(), c[2].strip()): c[3] for c in (r.split("\t") for r in rows[1:] if r) if c[-1] == "TRAIN"}
    for anchor, positive, negative in zip(nli.anchors, nli.positives, nli.negatives):
        assert labelled[(anchor, positive)] == "ENTAILMENT" and labelled[(anchor, negative)] == "CONTRADICTION"


def test_loss_must_fit_the_data(stsb_small):
    model = build("gem")
    with pytest.raises(ValueError, match="loss 'mnrl' trains on \\(anchor, positive"):
        make_loss("mnrl", model, stsb_small[0])
    assert type(make_loss(None, model, stsb_small[0])).__name__ == "CoSENTLoss"
    assert type(make_loss("angle", model, stsb_small[0])).__name__ == "AnglELoss"


# ----------------------------------------------------------------------------- the feature cache


@pytest.mark.parametrize("pooling, options", [
    ("weighted_sum", {"exclude_first_token": True}), ("latent_attention", {}), ("mltp", {}),
    ("mltp", {"layer_summary": "last_token", "layers": [2, 4, 6]}),
])
def test_cached_features_give_the_live_embeddings(pooling, options, sample_texts):
    """For a frozen base the cached states equal the live ones: pooling either gives the same vector."""
    model = build(pooling, **options).eval()
    live = model.encode(sample_texts, convert_to_numpy=True, batch_size=4)
    exact = build_feature_cache(model[0], model[1], sample_texts, dtype="float32", show_progress_bar=False)
    np.testing.assert_allclose(CachedHeadEmbedder(model, exact).encode(sample_texts), live, atol=2e-5)
    half = build_feature_cache(model[0], model[1], sample_texts, dtype="float16", show_progress_bar=False)
    assert half.nbytes < exact.nbytes
    cosines = (CachedHeadEmbedder(model, half).encode(sample_texts) * live).sum(axis=1)
    assert cosines.min() > 0.9999  # float16 storage error only


def test_cache_budget_disk_round_trip_and_fit(tmp_path, sample_texts):
    model = build("gem")
    with pytest.raises(ValueError, match="would take .* but the budget is 1.0 KiB"):
        build_feature_cache(model[0], model[1], sample_texts, max_bytes=1024, show_progress_bar=False)
    cache = build_feature_cache(model[0], model[1], sample_texts, show_progress_bar=False)
    loaded = type(cache).load(cache.save(tmp_path / "cache"))
    assert isinstance(loaded.values, np.memmap) and loaded.index == cache.index
    np.testing.assert_array_equal(CachedHeadEmbedder(model, loaded).encode(sample_texts),
                                  CachedHeadEmbedder(model, cache).encode(sample_texts))
    with pytest.raises(ValueError, match="holds token_states .* needs layer_stack"):
        CachedHeadEmbedder(build("mltp"), cache)


# ----------------------------------------------------------------------------- training


def test_fast_path_head_drops_back_into_the_pipeline(stsb_small, tmp_path):
    """Train on cached float32 features, save, reload with plain SentenceTransformer: same embeddings."""
    train, dev = stsb_small
    model = build("latent_attention")
    before = {k: v.clone() for k, v in model[1].state_dict().items()}
    base_before = {k: v.clone() for k, v in model[0].state_dict().items()}
    result = train_model(model, train, tmp_path / "out", dev=dev,
                         config=TrainConfig(fast_path=True, epochs=2, batch_size=16, cache_dtype="float32",
                                            show_progress_bar=False))
    assert any(not torch.equal(before[k], v) for k, v in model[1].state_dict().items())
    assert all(torch.equal(base_before[k], v) for k, v in model[0].state_dict().items())
    assert [r.epoch for r in result.history] == [1, 2] and result.cache_seconds > 0
    assert result.best_dev_score == max(r.dev_score for r in result.history)
    reloaded = SentenceTransformer(str(tmp_path / "out"), device="cpu")
    cache = build_feature_cache(model[0], model[1], dev.texts(), dtype="float32", show_progress_bar=False)
    embed = CachedHeadEmbedder(model, cache)
    texts = dev.texts()[:24]
    np.testing.assert_allclose(reloaded.encode(texts, convert_to_numpy=True), embed.encode(texts), atol=2e-5)
    # the best epoch's head was kept: its dev score is the recorded best
    assert cosine_spearman(embed.encode(dev.texts1), embed.encode(dev.texts2), dev.scores) == pytest.approx(
        result.best_dev_score, abs=1e-6)
    summary = json.loads((tmp_path / "out" / "st_pooling_training.json").read_text())
    assert summary["best_epoch"] == result.best_epoch and summary["train"]["rows"] == len(train)


@pytest.mark.parametrize("pooling", ["gem", "latent_attention"])
def test_trainer_head_mode_matches_the_fast_path(stsb_small, tmp_path, pooling):
    """Same data, seed and loss: the trainer with a frozen base and the fast path take the same steps, epoch after
    epoch (same batch orders, same clipped fused AdamW updates)."""
    train, dev = stsb_small
    trained = build(pooling)
    initial_head = {k: v.clone() for k, v in trained[1].state_dict().items()}
    base_before = {k: v.clone() for k, v in trained[0].state_dict().items()}
    config = TrainConfig(epochs=2, batch_size=16, show_progress_bar=False)
    slow = train_model(trained, train, tmp_path / "trainer", dev=dev, config=config)
    assert all(torch.equal(base_before[k], v) for k, v in trained[0].state_dict().items())
    assert slow.history[0].dev_metric == "dev_spearman_cosine"
    fast_model = build(pooling)
    fast_model[1].load_state_dict(initial_head)
    cache = build_feature_cache(fast_model[0], fast_model[1], train.texts() + dev.texts(), dtype="float32",
                                show_progress_bar=False)
    fast = train_head_on_cache(fast_model, cache, train, make_loss(None, fast_model, train), dev=dev, epochs=2,
                               batch_size=16, learning_rate=config.base_learning_rate, show_progress_bar=False)
    for fast_epoch, slow_epoch in zip(fast.history, slow.history, strict=True):
        assert fast_epoch.train_loss == pytest.approx(slow_epoch.train_loss, abs=1e-3)
        assert fast_epoch.dev_score == pytest.approx(slow_epoch.dev_score, abs=1e-3)
    assert fast.best_epoch == slow.best_epoch
    assert all(not torch.equal(v, initial_head[k]) for k, v in trained[1].state_dict().items())
    texts = dev.texts()
    same_head = CachedHeadEmbedder(fast_model, cache).encode(texts) * CachedHeadEmbedder(trained, cache).encode(texts)
    assert same_head.sum(axis=1).min() > 0.99999  # the same trained head: the same embeddings
    reloaded = SentenceTransformer(str(tmp_path / "trainer"), device="cpu")
    for k, v in reloaded[1].state_dict().items():
        torch.testing.assert_close(v, trained[1].state_dict()[k])


def test_full_mode_updates_the_base_with_triplets(tmp_path):
    nli = sick_nli_pairs(data_folder("sick")).subset(24)
    model = build("mean")
    base_before = {k: v.clone() for k, v in model[0].state_dict().items()}
    result = train_model(model, nli, tmp_path / "full",
                         config=TrainConfig(mode="full", epochs=1, batch_size=8, max_steps=2,
                                            show_progress_bar=False))
    assert any(not torch.equal(base_before[k], v) for k, v in model[0].state_dict().items())
    assert result.history[0].dev_score is None and result.best_epoch is None
    reloaded = SentenceTransformer(str(tmp_path / "full"), device="cpu")
    probe = nli.anchors[:3]
    np.testing.assert_allclose(reloaded.encode(probe), model.encode(probe), atol=1e-5)
    with pytest.raises(ValueError, match="MeanPooling has no trainable parameters"):
        train_model(build("mean"), nli, None, config=TrainConfig(mode="head", show_progress_bar=False))


def test_failure_leaves_nothing_and_existing_output_is_kept(stsb_small, tmp_path):
    train, _ = stsb_small
    target = tmp_path / "model"
    with pytest.raises(ValueError, match="loss 'mnrl' trains on"):
        train_model(build("gem"), train, target, config=TrainConfig(loss="mnrl", show_progress_bar=False))
    assert list(tmp_path.iterdir()) == []
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="exists and is not empty"):
        train_model(build("gem"), train, target, config=TrainConfig(show_progress_bar=False))
    assert [p.name for p in tmp_path.iterdir()] == ["model"] and (target / "keep.txt").read_text() == "mine"


def test_config_refuses_bad_combinations():
    with pytest.raises(ValueError, match="fast path needs a frozen base"):
        TrainConfig(mode="full", fast_path=True)
    with pytest.raises(ValueError, match="mode must be one of"):
        TrainConfig(mode="adapter")


@pytest.mark.skipif(HAS_PEFT, reason="peft is installed: the missing-extra message cannot be seen")
def test_lora_without_peft_says_how_to_install(stsb_small):
    with pytest.raises(ImportError, match=r"pip install 'st-pooling\[lora\]'"):
        train_model(build("gem"), stsb_small[0], None, config=TrainConfig(mode="lora", show_progress_bar=False))


@pytest.mark.skipif(not HAS_PEFT, reason="peft is not installed (optional extra: pip install 'st-pooling[lora]')")
def test_lora_trains_adapters_and_head_only(stsb_small, tmp_path):
    train, _ = stsb_small
    model = build("gem")
    base_before = {k: v.clone() for k, v in model[0].state_dict().items()}
    train_model(model, train.subset(32), tmp_path / "lora",
                config=TrainConfig(mode="lora", epochs=1, batch_size=16, show_progress_bar=False))
    names = [name for name, _ in model[0].named_parameters()]
    assert any("lora_" in name for name in names)
    for name, value in model[0].state_dict().items():
        if "lora_" not in name and name in base_before:
            assert torch.equal(base_before[name], value), name
    assert model[1].p.item() != 3.0


def test_train_command_writes_a_loadable_model(tmp_path, capsys):
    import argparse

    from st_pooling.training.cli import add_train_command

    rows = [{"anchor": f"question number {i} about topic {i % 5}", "positive": f"answer {i} on topic {i % 5}"}
            for i in range(24)]
    train_file = write(tmp_path, "pairs.jsonl", "\n".join(json.dumps(row) for row in rows) + "\n")
    parser = argparse.ArgumentParser()
    add_train_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", "--pooling", "weighted_sum", "--train", str(train_file), "--dev",
                              str(train_file), "--fast-path", "--epochs", "2", "--batch-size", "8",
                              "--max-seq-length", "32", "--output", str(tmp_path / "cli"), "--no-progress"])
    assert args.handler(args) == 0
    printed = capsys.readouterr().out
    assert "best epoch" in printed and "neg_loss" in printed
    model = SentenceTransformer(str(tmp_path / "cli"), device="cpu")
    assert type(model[1]).__name__ == "WeightedSumPooling" and model[1].scorer.weight.abs().sum() > 0
    args = parser.parse_args(["train", "--list-recipes"])
    assert args.handler(args) == 0 and "mltp-bidirectional" in capsys.readouterr().out


def test_head_only_recipe_trains_on_the_fast_path(tmp_path):
    """`train --recipe` follows the recipe's own config: a head-only recipe runs on cached features (the summary
    records the fast path and its cache time); --no-fast-path still chooses the trainer."""
    import argparse

    from st_pooling.training.cli import add_train_command

    rows = [{"anchor": f"question number {i} about topic {i % 5}", "positive": f"answer {i} on topic {i % 5}"}
            for i in range(16)]
    train_file = write(tmp_path, "pairs.jsonl", "\n".join(json.dumps(row) for row in rows) + "\n")
    parser = argparse.ArgumentParser()
    add_train_command(parser.add_subparsers(dest="command"))
    for flags, output, expected in (([], "recipe", True), (["--no-fast-path"], "trainer", False)):
        args = parser.parse_args(["train", "--recipe", "minilm-gem", "--train", str(train_file), "--batch-size", "8",
                                  "--max-seq-length", "32", "--output", str(tmp_path / output), "--no-progress",
                                  *flags])
        assert args.handler(args) == 0
        summary = json.loads((tmp_path / output / "st_pooling_training.json").read_text())
        assert summary["config"]["fast_path"] is expected and summary["config"]["mode"] == "head"


def _training_sets(kind: str):
    if kind == "scored pairs":
        folder = data_folder("stsbenchmark")
        return stsb_scored_pairs(folder, "train").subset(40, seed=1), stsb_scored_pairs(folder, "dev").subset(24)
    nli = sick_nli_pairs(data_folder("sick"))
    if kind == "pairs":
        nli = PairData(nli.anchors, nli.positives)
    duplicated = PairData(nli.anchors[:30] + nli.anchors[:10], nli.positives[:30] + nli.positives[:10],
                          None if nli.negatives is None else nli.negatives[:30] + nli.negatives[:10])
    return duplicated, nli.subset(16, seed=3)  # repeated rows: the no-duplicates sampler has work to do


@pytest.mark.parametrize("kind", ["scored pairs", "pairs", "triplets"])
def test_fast_path_takes_the_trainers_steps_for_every_data_kind(tmp_path, kind):
    """The fast path equals the trainer path step by step (same batches, same clipped fused AdamW updates) for
    scored pairs (CoSENT), pairs and triplets (MNRL, whose trainer batches come from the no-duplicates sampler)."""
    train, dev = _training_sets(kind)
    assert train.kind == kind.replace(" ", "_")
    torch.manual_seed(0)
    slow_model = build("gem", native="mean")
    start = {k: v.clone() for k, v in slow_model[1].state_dict().items()}
    config = TrainConfig(epochs=2, batch_size=8, show_progress_bar=False, learning_rate=3e-2)
    slow = train_model(slow_model, train, None, dev=dev, config=config)
    fast_model = build("gem", native="mean")
    fast_model[1].load_state_dict(start)
    cache = build_feature_cache(fast_model[0], fast_model[1], train.texts() + dev.texts(), dtype="float32",
                                show_progress_bar=False)
    fast = train_head_on_cache(fast_model, cache, train, make_loss(None, fast_model, train), dev=dev, epochs=2,
                               batch_size=8, learning_rate=3e-2, show_progress_bar=False)
    assert [len(r.step_losses) for r in fast.history] == [len(r.step_losses) for r in slow.history] == [5, 5]
    for fast_epoch, slow_epoch in zip(fast.history, slow.history, strict=True):
        np.testing.assert_allclose(fast_epoch.step_losses, slow_epoch.step_losses, atol=1e-5)
        assert fast_epoch.dev_score == pytest.approx(slow_epoch.dev_score, abs=1e-5), (fast.history, slow.history)
    assert fast.best_epoch == slow.best_epoch
    for name, value in fast_model[1].state_dict().items():
        torch.testing.assert_close(value, slow_model[1].state_dict()[name], atol=1e-5, rtol=1e-5)
