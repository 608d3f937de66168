"""Strict pooling options and guarded loading (issue 15, items 6, 9 and 10): every misread option of the sweep is
refused with its source named, and a damaged saved model says which file and what to do."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from sentence_transformers import SentenceTransformer

import st_pooling
from st_pooling.modules.spec import PoolingSpec
from st_pooling.modules.base import CONFIG_FORMAT, CONFIG_FORMAT_KEY
from st_pooling.modules.options import PoolingOptionError

# Each was read silently as something else before (the sweep's item 6).
MISREAD_SPECS = {
    "mean:exclude_first_token=off": "expected true/false, 1/0 or yes/no",
    "mean:exclude_first_token=maybe": "expected true/false, 1/0 or yes/no",
    "latent_attention:num_latents=0": "positive whole number",
    "latent_attention:num_heads=0": "positive whole number",
    "group_gem:num_groups=0": "positive whole number",
    "mltp:layers=": "the list is empty",
    "mltp:layers=0": "positive whole number",
    "gem:initial_p=abc": "expected a number",
    "gem:initial_p=nan": "expected a finite number",
    "gem:foo=1": "unknown option",
}


@pytest.mark.parametrize("spec", sorted(MISREAD_SPECS))
def test_misread_options_are_refused_naming_the_spec(spec):
    with pytest.raises(PoolingOptionError, match=MISREAD_SPECS[spec]) as refused:
        PoolingSpec.parse(spec)
    assert f"pooling spec {spec!r}" in str(refused.value)


def test_booleans_and_layer_lists_read_as_documented():
    assert PoolingSpec.parse("mean:exclude_first_token=no").options == {"exclude_first_token": False}
    assert PoolingSpec.parse("mean:exclude_first_token=1").options == {"exclude_first_token": True}
    assert PoolingSpec.parse("mltp:layers=3").options == {"layers": [3]}
    assert PoolingSpec.parse("mltp:layers=1,3,5,layer_summary=mean").options == {"layers": [1, 3, 5],
                                                                                  "layer_summary": "mean"}
    assert PoolingSpec.parse("mltp:layers=4+5+6").options == {"layers": [4, 5, 6]}


@pytest.fixture(scope="module")
def saved_gem(tmp_path_factory):
    folder = tmp_path_factory.mktemp("saved") / "gem"
    st_pooling.build_model("minilm", "gem", max_seq_length=32).save(str(folder))
    return folder


def copy_of(saved, tmp_path):
    import shutil

    target = tmp_path / "model"
    shutil.copytree(saved, target)
    return target


def pooling_folder(folder):
    return next(p for p in folder.iterdir() if p.is_dir() and (p / "config.json").is_file()
                and CONFIG_FORMAT_KEY in (p / "config.json").read_text())


def test_configs_carry_a_format_and_old_ones_still_load(saved_gem, tmp_path):
    folder = copy_of(saved_gem, tmp_path)
    config_path = pooling_folder(folder) / "config.json"
    config = json.loads(config_path.read_text())
    assert config[CONFIG_FORMAT_KEY] == CONFIG_FORMAT
    del config[CONFIG_FORMAT_KEY]  # as st-pooling 0.1 saved it
    config_path.write_text(json.dumps(config))
    old = SentenceTransformer(str(folder), device="cpu")
    new = SentenceTransformer(str(saved_gem), device="cpu")
    assert torch.allclose(old.encode("a sentence", convert_to_tensor=True), new.encode("a sentence",
                                                                                        convert_to_tensor=True))
    config[CONFIG_FORMAT_KEY] = CONFIG_FORMAT + 1
    config_path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match=rf"{config_path}.*newer st-pooling.*pip install -U st-pooling"):
        SentenceTransformer(str(folder), device="cpu")


@pytest.mark.parametrize("damage, message", [
    ("unknown key", "unknown option"),
    ("missing key", "needs embedding_dimension"),
    ("misread value", "expected true/false"),
    ("missing config", "is missing"),
    ("broken json", "is not valid JSON"),
    ("truncated weights", "is damaged"),
    ("nan weights", "NaN or infinite"),
])
def test_a_damaged_saved_pooling_names_the_file_and_what_to_do(saved_gem, tmp_path, damage, message):
    folder = copy_of(saved_gem, tmp_path)
    pooling = pooling_folder(folder)
    config_path, weights = pooling / "config.json", pooling / "model.safetensors"
    config = json.loads(config_path.read_text())
    if damage == "unknown key":
        config_path.write_text(json.dumps({**config, "foo": 1}))
    elif damage == "missing key":
        config_path.write_text(json.dumps({k: v for k, v in config.items() if k != "embedding_dimension"}))
    elif damage == "misread value":
        config_path.write_text(json.dumps({**config, "exclude_first_token": "off"}))
    elif damage == "missing config":
        config_path.unlink()
    elif damage == "broken json":
        config_path.write_text("{ not json")
    elif damage == "truncated weights":
        weights.write_bytes(weights.read_bytes()[:20])
    elif damage == "nan weights":
        save_file({name: torch.full_like(t, float("nan")) for name, t in load_file(weights).items()}, weights)
    with pytest.raises((ValueError, FileNotFoundError), match=message) as refused:
        SentenceTransformer(str(folder), device="cpu")
    named = weights if "weights" in damage else config_path
    assert str(named) in str(refused.value)


def test_build_model_keeps_the_bases_own_max_seq_length(minilm_path):
    """all-MiniLM-L6-v2 was saved with max_seq_length 256 (its tokenizer allows 512): build_model keeps 256, as
    SentenceTransformer(path) does, unless told otherwise."""
    plain = SentenceTransformer(minilm_path, device="cpu")
    assert st_pooling.build_model("minilm", "gem").max_seq_length == plain.max_seq_length == 256
    assert st_pooling.build_model("minilm", "gem", max_seq_length=64).max_seq_length == 64
