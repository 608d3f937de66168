"""Native start: every learnable head can start as exactly the base's own parameter-free pooling.

Real bases only: the packaged MiniLM (an encoder whose sentence-transformers config says mean pooling) and the tiny
random Llama decoder of tests/test_decoders.py (a plain transformers folder, no pooling config). Nothing is mocked.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer
from test_decoders import tiny_model, tiny_tokenizer

import st_pooling
from st_pooling import POOLINGS, build_model
from st_pooling.models import native_pooling_of
from st_pooling.sweep.candidates import SearchTrainer
from st_pooling.sweep.space import SearchSpaceError, space_from_dict
from st_pooling.training import PairData, TrainConfig, make_loss, train_pooling

LEARNABLE = sorted(name for name, cls in POOLINGS.items() if cls.learnable)
NATIVES = ["mean", "max", "cls", "last_token", "weighted_mean"]
TEXTS = [
    "A man is playing a guitar on the stage.",
    "The central bank raised interest rates again this quarter.",
    "short",
    "The committee postponed the vote on the new budget until next week because several members were absent.",
]
PAIRS = PairData(
    anchors=["the cat sat on a mat", "a dog ran in the park", "rain falls from a grey sky", "we eat bread",
             "music plays loud", "the ship sails over the sea", "stars shine at night", "the sun is hot"],
    positives=["a cat is sitting on the mat", "the dog runs through a park", "it is raining under grey clouds",
               "bread is what we eat", "loud music is playing", "a ship is sailing at sea", "at night stars shine",
               "it is hot in the sun"],
)


@pytest.fixture(scope="module")
def decoder(tmp_path_factory) -> str:
    """A saved tiny random Llama (hidden 32, 2 layers) with a byte-level BPE tokenizer: no pooling config."""
    folder = tmp_path_factory.mktemp("tiny-llama")
    tiny_model("llama").save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module", params=["minilm", "decoder"])
def base(request, decoder) -> str:
    return "minilm" if request.param == "minilm" else decoder


def encode(model: SentenceTransformer, texts: list[str] = TEXTS) -> np.ndarray:
    return model.encode(texts, batch_size=4, convert_to_numpy=True)


def pooled(base: str, pooling: str, **options) -> np.ndarray:
    """The pooling's raw output (no Normalize), so the comparison sees the actual values."""
    return encode(build_model(base, pooling, normalize=False, max_seq_length=32, device="cpu", **options))


# ----------------------------------------------------------------------------- where the native pooling comes from


def write_st_config(folder: Path, pooling_config: dict) -> str:
    """A sentence-transformers folder layout (modules.json + 1_Pooling/config.json) around the packaged MiniLM."""
    (folder / "1_Pooling").mkdir(parents=True)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 384, **pooling_config}))
    return str(folder)


def test_native_pooling_comes_from_the_base_config(tmp_path, minilm_path, decoder):
    assert json.loads((Path(minilm_path) / "1_Pooling" / "config.json").read_text())["pooling_mode_mean_tokens"]
    assert native_pooling_of("minilm") == native_pooling_of(minilm_path) == "mean"
    cases = {"cls": {"pooling_mode": "cls"}, "last_token": {"pooling_mode": "lasttoken"},
             "weighted_mean": {"pooling_mode_weightedmean_tokens": True, "pooling_mode_mean_tokens": False},
             "max": {"pooling_mode_cls_token": False, "pooling_mode_max_tokens": True}}
    for expected, config in cases.items():
        assert native_pooling_of(write_st_config(tmp_path / expected, config)) == expected
    for config in ({"pooling_mode": "mean_sqrt_len_tokens"}, {"pooling_mode": ["cls", "mean"]}):
        with pytest.raises(ValueError, match="no parameter-free st-pooling pooling reproduces"):
            native_pooling_of(write_st_config(tmp_path / f"bad-{len(str(config))}", config))
    # a model saved by st-pooling: its own parameter-free pooling; a trained head is refused
    build_model("minilm", "max", device="cpu").save(str(tmp_path / "st-max"))
    assert native_pooling_of(str(tmp_path / "st-max")) == "max"
    build_model("minilm", "gem", device="cpu").save(str(tmp_path / "st-gem"))
    with pytest.raises(ValueError, match="'gem'"):
        native_pooling_of(str(tmp_path / "st-gem"))
    # no sentence-transformers config (a plain transformers decoder): mean, the best zero-shot in docs/decoders.md
    assert not (Path(decoder) / "modules.json").exists() and native_pooling_of(decoder) == "mean"


def test_packaged_smollm2_starts_from_mean():
    try:
        from st_pooling.decoders.smollm2 import packaged_gguf_path

        packaged_gguf_path()
    except ImportError as error:
        pytest.skip(str(error))
    assert native_pooling_of("smollm2") == "mean"


def test_native_must_be_a_parameter_free_last_layer_pooling():
    for bad in ("gem", "mltp", "avg"):
        with pytest.raises(ValueError, match="native must be|unknown pooling"):
            st_pooling.create_pooling("latent_attention", 64, native=bad)
    for parameter_free in ("mean", "cls"):
        with pytest.raises(ValueError, match="native start is for learnable heads"):
            st_pooling.create_pooling(parameter_free, 64, native="max")


# ----------------------------------------------------------------------------- step 0 is the native pooling


@pytest.mark.parametrize("native", NATIVES)
def test_untrained_head_equals_the_native_pooling(base, native):
    reference = pooled(base, native)
    assert np.abs(reference).max() > 1e-2  # a real signal, not zeros
    for head in LEARNABLE:
        started = pooled(base, head, native=native)
        assert np.abs(started - reference).max() <= 1e-6, head
        if (head, native) != ("weighted_sum", "mean"):  # an untrained weighted sum is the mean by construction
            assert np.abs(pooled(base, head) - reference).max() > 1e-3, head  # without it: another pooling


def test_native_term_reads_every_token_whatever_the_head_leaves_out(base):
    """A head's ``exclude_first_token`` applies to its learned term; the native pooling is the base's own."""
    reference = pooled(base, "mean")
    assert np.abs(pooled(base, "mean", exclude_first_token=True) - reference).max() > 1e-4
    for head, options in (("gem", {"exclude_first_token": True}), ("weighted_sum", {"exclude_first_token": True}),
                          ("mltp", {"exclude_first_token": True, "layers": [1]})):
        assert np.abs(pooled(base, head, native="mean", **options) - reference).max() <= 1e-6, head


# ----------------------------------------------------------------------------- saving, reloading, old configs


@pytest.mark.parametrize("head", LEARNABLE)
def test_native_start_is_saved_and_reloads(tmp_path, head):
    model = build_model("minilm", head, native="cls", device="cpu")
    model.save(str(tmp_path))
    config = json.loads(next(tmp_path.glob("1_*/config.json")).read_text())
    assert config["native"] == "cls"
    reloaded = SentenceTransformer(str(tmp_path), device="cpu")
    assert reloaded[1].native == "cls"
    assert np.abs(encode(reloaded) - encode(build_model("minilm", "cls", device="cpu"))).max() <= 1e-6


@pytest.mark.parametrize("head", LEARNABLE)
def test_a_config_saved_before_native_start_loads_as_today(tmp_path, head):
    model = build_model("minilm", head, device="cpu")  # build_model evaluates the pure head: no native start
    assert model[1].native is None
    expected = encode(model)
    model.save(str(tmp_path))
    config_path = next(tmp_path.glob("1_*/config.json"))
    config = json.loads(config_path.read_text())
    assert config.pop("native") is None
    config_path.write_text(json.dumps(config))  # as written before the key existed
    reloaded = SentenceTransformer(str(tmp_path), device="cpu")
    assert reloaded[1].native is None and "native_gate" not in reloaded[1].state_dict()
    assert np.abs(encode(reloaded) - expected).max() <= 1e-6
    if head != "weighted_sum":  # the untrained weighted sum is the mean by construction, the others are not
        assert np.abs(encode(reloaded) - encode(build_model("minilm", "mean", device="cpu"))).max() > 1e-3


# ----------------------------------------------------------------------------- training moves away from it


def embed(model: SentenceTransformer, texts: list[str]) -> torch.Tensor:
    return model(model[0].preprocess(texts))["sentence_embedding"]


def head_gradients(model: SentenceTransformer) -> dict[str, float]:
    """Gradient norm of each head parameter under the MNRL loss on the training pairs."""
    head = model[1]
    head.zero_grad(set_to_none=True)
    loss = make_loss(None, model, PAIRS)
    loss.compute_loss_from_embeddings([embed(model, PAIRS.anchors), embed(model, PAIRS.positives)], None).backward()
    return {name: float(p.grad.norm()) if p.grad is not None else 0.0 for name, p in head.named_parameters()}


@pytest.mark.parametrize("head", LEARNABLE)
def test_one_training_step_moves_a_native_start(base, head, tmp_path):
    """train_pooling starts natively by default; one AdamW step on a real loss leaves the native pooling, and the
    trained head is what is saved and reloaded."""
    native = pooled(base, "mean")
    untrained = build_model(base, head, native="mean", max_seq_length=32, device="cpu")
    gradients = head_gradients(untrained)
    assert gradients.pop("native_gate") > 0  # the gate learns from the first step ...
    assert sum(gradients.values()) == 0  # ... and the head's own parameters only once it has opened
    config = TrainConfig(max_steps=1, batch_size=8, fast_path=True, cache_dtype="float32", show_progress_bar=False)
    result = train_pooling(base, head, PAIRS, tmp_path / "trained", config=config, max_seq_length=32)
    trained = result.model
    assert trained[1].native == "mean"
    raw = SentenceTransformer(modules=[trained[0], trained[1]], device="cpu")  # no Normalize: the pooled values
    moved = np.abs(encode(raw) - native).max()
    assert moved > 1e-5, moved
    gradients = head_gradients(trained)
    assert gradients.pop("native_gate") > 0 and sum(gradients.values()) > 0
    reloaded = SentenceTransformer(str(tmp_path / "trained"), device="cpu")
    assert reloaded[1].native == "mean"
    np.testing.assert_allclose(encode(reloaded), encode(trained), atol=1e-6)


def test_train_pooling_without_native_start(tmp_path):
    config = TrainConfig(max_steps=1, batch_size=8, fast_path=True, show_progress_bar=False)
    result = train_pooling("minilm", "gem", PAIRS, None, config=config, native=None, max_seq_length=32)
    assert result.model[1].native is None and "native_gate" not in result.model[1].state_dict()


def test_train_command_starts_natively_unless_told_not_to(tmp_path):
    import argparse

    from st_pooling.training.cli import add_train_command

    rows = [{"anchor": a, "positive": p} for a, p in zip(PAIRS.anchors, PAIRS.positives)]
    (tmp_path / "pairs.jsonl").write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    parser = argparse.ArgumentParser()
    add_train_command(parser.add_subparsers(dest="command"))
    common = ["train", "--pooling", "gem", "--train", str(tmp_path / "pairs.jsonl"), "--fast-path", "--batch-size",
              "8", "--max-seq-length", "32", "--no-progress"]
    for output, extra, expected in (("native", [], "mean"), ("plain", ["--no-native-start"], None),
                                    ("chosen", ["--pooling", "gem:native=cls"], "cls")):
        args = parser.parse_args(common + ["--output", str(tmp_path / output)] + extra)
        assert args.handler(args) == 0
        config = json.loads(next((tmp_path / output).glob("1_*/config.json")).read_text())
        assert config["native"] == expected, output


def test_search_starts_natively_and_its_mltp_cache_carries_the_native_row(tmp_path):
    rows = [{"text1": a, "text2": p, "score": float(i % 5)} for i, (a, p) in enumerate(zip(PAIRS.anchors,
                                                                                          PAIRS.positives))]
    (tmp_path / "scored.jsonl").write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    space = space_from_dict({
        "base": "minilm", "train": str(tmp_path / "scored.jsonl"), "dev": str(tmp_path / "scored.jsonl"),
        "max_seq_length": 32, "batch_size": 4, "steps": 30, "eval_every": 10,
        "candidates": [{"pooling": "mltp", "layers": [[2, 5], [1, 2, 3, 4, 5, 6]], "lr": 0.001},
                       {"pooling": "gem", "native": None, "lr": 0.001}]})
    trainer = SearchTrainer(space, device="cpu", cache_dtype="float32")
    texts = trainer.texts
    mean = encode(build_model("minilm", "mean", max_seq_length=32, device="cpu"), texts)
    for candidate in space.candidates[:2]:
        run = trainer.start(candidate)
        assert run.head.native == "mean"
        # cached features vs a live forward pass: batch composition changes the base's rounding (as in test_training)
        np.testing.assert_allclose(run.embedder.encode(texts), mean, atol=2e-5)
        run.next_point(10)
        assert np.abs(run.embedder.encode(texts) - mean).max() > 1e-4
    assert trainer.build_head(space.candidates[2]).native is None
    plain = space.with_overrides(native_start=False)  # YAML `native_start: false`, CLI --no-native-start
    assert SearchTrainer(plain, device="cpu").build_head(space.candidates[0]).native is None
    assert plain.fingerprint() != space.fingerprint()  # a saved search resumes only with the same setting
    chosen = space.with_overrides(native_start="weighted_mean")  # YAML `native_start: weighted_mean` (tune --native)
    head = SearchTrainer(chosen, device="cpu").build_head(space.candidates[0])
    assert head.native == "weighted_mean" and "native" not in space.candidates[0].options
    assert len({chosen.fingerprint(), plain.fingerprint(), space.fingerprint()}) == 3
    assert SearchTrainer(chosen, device="cpu").build_head(space.candidates[2]).native is None  # the candidate's own
    for bad in ("gem", "mltp", "no_such_pooling"):
        with pytest.raises(SearchSpaceError, match=f"native_start: .*{bad}"):
            space.with_overrides(native_start=bad)
