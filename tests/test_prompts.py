"""Instruction prompts: with ``include_prompt=False`` every pooling leaves the prompt's tokens out, as
sentence-transformers' own ``Pooling`` does. Real MiniLM, real ``encode(..., prompt=...)``; nothing mocked."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Normalize, Pooling

import st_pooling  # noqa: F401  (registers the classes for loading)
from st_pooling import POOLINGS, build_model

PROMPT = "Represent this sentence for searching relevant passages: "
TEXTS = ["A man is playing a guitar on the stage.", "short", "The committee postponed the vote until next week."]
ST_MODES = {"mean": "mean", "max": "max", "cls": "cls", "last_token": "lasttoken"}


def prompt_free_reference(model: SentenceTransformer, texts: list[str]) -> np.ndarray:
    """The pooling of ``model`` (include_prompt on) applied to the prompted texts' token states with the prompt's
    tokens masked out by hand: what include_prompt=False must give."""
    transformer, pooling = model[0], model[1]
    features = transformer.preprocess(texts, prompt=PROMPT)
    prompt_length = int(features["prompt_length"])
    assert prompt_length > 3
    with torch.no_grad():
        output = transformer(dict(features))
        mask = output["attention_mask"].clone()
        real = mask.cumsum(dim=1) * mask  # 1-based position among real tokens
        output["attention_mask"] = (real > prompt_length).to(mask.dtype)
        output.pop("prompt_length", None)
        pooled = pooling(output)["sentence_embedding"]
    return torch.nn.functional.normalize(pooled, dim=1).numpy()


@pytest.mark.parametrize("name", sorted(POOLINGS))
def test_include_prompt_off_leaves_the_prompt_out_of_every_pooling(name, tmp_path):
    torch.manual_seed(0)
    model = build_model("minilm", name, device="cpu")
    if POOLINGS[name].learnable:  # an untrained head with a zero gate is its native pooling: give it a real head
        model = build_model("minilm", name, device="cpu", native="mean")
        with torch.no_grad():
            model[1].native_gate.fill_(0.5)
    with_prompt = model.encode(TEXTS, prompt=PROMPT)
    reference = prompt_free_reference(model, TEXTS)
    model[1].include_prompt = False
    without_prompt = model.encode(TEXTS, prompt=PROMPT)
    np.testing.assert_allclose(without_prompt, reference, atol=1e-5)
    if name != "last_token":  # a prompt before the text never was the last token
        assert np.abs(without_prompt - with_prompt).max() > 1e-3  # the prompt really was pooled before
    np.testing.assert_allclose(model.encode(TEXTS), model.encode(TEXTS, prompt=""), atol=1e-6)  # no prompt: as before
    model.save(str(tmp_path / "saved"))
    reloaded = SentenceTransformer(str(tmp_path / "saved"), device="cpu")
    assert reloaded[1].include_prompt is False
    np.testing.assert_allclose(reloaded.encode(TEXTS, prompt=PROMPT), without_prompt, atol=1e-6)


@pytest.mark.parametrize("name", sorted(ST_MODES))
def test_matches_sentence_transformers_pooling_without_the_prompt(name):
    ours = build_model("minilm", name, device="cpu", include_prompt=False)
    theirs = SentenceTransformer(modules=[copy.deepcopy(ours[0]),
                                          Pooling(ours[0].get_embedding_dimension(), ST_MODES[name],
                                                  include_prompt=False),
                                          Normalize()], device="cpu")
    np.testing.assert_allclose(ours.encode(TEXTS, prompt=PROMPT), theirs.encode(TEXTS, prompt=PROMPT), atol=1e-6)
    np.testing.assert_allclose(ours.encode_query(TEXTS), theirs.encode_query(TEXTS), atol=1e-6)


def test_include_prompt_is_a_checked_option():
    from st_pooling.modules.spec import PoolingSpec
    from st_pooling.modules.options import PoolingOptionError

    assert PoolingSpec.parse("gem:include_prompt=false").options == {"include_prompt": False}
    with pytest.raises(PoolingOptionError, match="include_prompt"):
        PoolingSpec.parse("mean:include_prompt=maybe")
