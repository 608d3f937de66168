"""Every pooling module as a sentence-transformers module on the packaged MiniLM: parity, save/load, robustness."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

from st_pooling import POOLINGS, build_model, create_pooling
from st_pooling.modules.attention import CrossAttentionBlock
from st_pooling.modules.base import PoolingModule

BUILTIN_MODES = {"mean": "mean", "max": "max", "cls": "cls", "last_token": "lasttoken",
                 "weighted_mean": "weightedmean"}
LEARNABLE = sorted(name for name, cls in POOLINGS.items() if cls.learnable)


@pytest.fixture(scope="module")
def transformer(minilm_path):
    return Transformer(minilm_path, config_kwargs={"output_hidden_states": True})


@pytest.mark.parametrize("name", sorted(BUILTIN_MODES))
@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_parameter_free_poolings_match_sentence_transformers(transformer, sample_texts, name, padding_side):
    transformer.tokenizer.padding_side = padding_side
    try:
        ours = SentenceTransformer(modules=[transformer, create_pooling(name, 384)], device="cpu")
        theirs = SentenceTransformer(modules=[transformer, Pooling(384, pooling_mode=BUILTIN_MODES[name])],
                                     device="cpu")
        a = ours.encode(sample_texts, batch_size=4, convert_to_numpy=True)
        b = theirs.encode(sample_texts, batch_size=4, convert_to_numpy=True)
    finally:
        transformer.tokenizer.padding_side = "right"
    assert a.shape == (len(sample_texts), 384)
    assert np.abs(a - b).max() <= 1e-5


def test_every_registered_pooling_reloads_in_a_fresh_process(tmp_path, sample_texts):
    """Save each pooling with build_model, reload with plain SentenceTransformer(path) in a new interpreter."""
    expected = {}
    for name in sorted(POOLINGS):
        model = build_model("minilm", name, device="cpu")
        path = tmp_path / name
        model.save(str(path))
        expected[name] = model.encode(sample_texts, convert_to_numpy=True)
        saved_files = {p.name for p in path.rglob("*")}
        assert "pytorch_model.bin" not in saved_files  # never pickle
        if POOLINGS[name].learnable:
            assert any(p.name == "model.safetensors" and p.parent != path for p in path.rglob("*"))
    script = textwrap.dedent(f"""
        import json, sys, numpy as np
        import st_pooling  # registers st-pooling's module classes; no trust_remote_code needed
        from sentence_transformers import SentenceTransformer
        texts = json.loads(sys.argv[1])
        for name in {sorted(POOLINGS)!r}:
            model = SentenceTransformer(r"{tmp_path}/" + name, device="cpu")
            np.save(r"{tmp_path}/" + name + ".npy", model.encode(texts, convert_to_numpy=True))
    """)
    result = subprocess.run([sys.executable, "-c", script, json.dumps(sample_texts)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "trust_remote_code" not in result.stderr
    for name, embeddings in expected.items():
        reloaded = np.load(tmp_path / f"{name}.npy")
        assert np.abs(reloaded - embeddings).max() <= 1e-6, name


@pytest.mark.parametrize("name", LEARNABLE)
def test_gradients_reach_every_trainable_parameter(name):
    torch.manual_seed(0)
    module = create_pooling(name, 64, num_layers=3)
    states = torch.randn(3, 6, 64)
    features = {"token_embeddings": states, "attention_mask": torch.tensor([[1] * 6, [1] * 2 + [0] * 4, [0, 1, 1, 1, 1, 1]]),
                "all_layer_embeddings": tuple(torch.randn(3, 6, 64) for _ in range(4))}
    out = module(features)["sentence_embedding"]
    (out * torch.randn_like(out)).sum().backward()
    for param_name, param in module.named_parameters():
        assert param.grad is not None, param_name
        assert torch.isfinite(param.grad).all(), param_name
        assert param.grad.abs().sum() > 0, param_name


@pytest.mark.parametrize("name", sorted(POOLINGS))
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_states_give_finite_outputs(name, dtype):
    module = create_pooling(name, 64, num_layers=2)
    big = torch.randn(2, 5, 64) * 200  # decoder-sized activations
    features = {"token_embeddings": big.to(dtype), "attention_mask": torch.tensor([[1] * 5, [1, 1, 0, 0, 0]]),
                "all_layer_embeddings": tuple((torch.randn(2, 5, 64) * 200).to(dtype) for _ in range(3))}
    out = module(features)["sentence_embedding"]
    assert out.dtype == dtype
    assert torch.isfinite(out.float()).all()


@pytest.mark.parametrize("name", sorted(POOLINGS))
def test_degenerate_texts_give_finite_embeddings(name):
    model = build_model("minilm", name, device="cpu", max_seq_length=32)
    texts = ["", "   \n\t ", "word " * 2000, "a normal sentence"]
    embeddings = model.encode(texts, convert_to_numpy=True)
    assert embeddings.shape == (4, 384)
    assert np.isfinite(embeddings).all()
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-4)
    empty = model.encode([], convert_to_numpy=True)
    assert isinstance(empty, np.ndarray) and empty.size == 0


def test_layer_hungry_pooling_without_hidden_states_says_what_to_do(minilm_path):
    plain = Transformer(minilm_path)  # no output_hidden_states
    model = SentenceTransformer(modules=[plain, create_pooling("mltp", 384, num_layers=6)], device="cpu")
    with pytest.raises(ValueError, match="output_hidden_states"):
        model.encode(["hello"])


@pytest.mark.parametrize("name", ["gem", "latent_attention"])
def test_saved_pooling_with_wrong_dimension_fails_at_load(tmp_path, name):
    model = build_model("minilm", name, device="cpu")
    model.save(str(tmp_path))
    pooling_dir = next(p for p in tmp_path.iterdir() if p.is_dir() and (p / "config.json").exists()
                       and "embedding_dimension" in (p / "config.json").read_text())
    config = json.loads((pooling_dir / "config.json").read_text())
    config["embedding_dimension"] = 512
    (pooling_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="512"):
        SentenceTransformer(str(tmp_path), device="cpu")


def test_unknown_pooling_and_bad_options_are_explained():
    with pytest.raises(ValueError, match="unknown pooling 'avg'.*mean"):
        create_pooling("avg", 384)
    with pytest.raises(ValueError, match="options of pooling 'gem': unknown option.*exponent.*valid options"):
        create_pooling("gem", 384, exponent=3)
    with pytest.raises(ValueError, match="divide"):
        create_pooling("group_gem", 384, num_groups=5)
    with pytest.raises(ValueError, match="layers must lie in 1..6"):
        create_pooling("mltp", 384, num_layers=6, layers=[1, 7])
    with pytest.raises(ValueError, match="option layers=.*positive whole number"):
        create_pooling("mltp", 384, num_layers=6, layers=[0, 2])


def test_weighted_sum_starts_as_mean_and_gem_at_p1_is_mean(transformer, sample_texts):
    mean = SentenceTransformer(modules=[transformer, create_pooling("mean", 384)], device="cpu")
    weighted = SentenceTransformer(modules=[transformer, create_pooling("weighted_sum", 384)], device="cpu")
    gem1 = SentenceTransformer(modules=[transformer, create_pooling("gem", 384, initial_p=1.0)], device="cpu")
    reference = mean.encode(sample_texts)
    assert np.abs(weighted.encode(sample_texts) - reference).max() <= 1e-5
    assert np.abs(gem1.encode(sample_texts) - reference).max() <= 1e-4


def test_flattened_layout_gives_the_padded_result():
    """ST 6 unpads inputs under flash-attention: (1, total, dim) + cu_seq_lens_q must pool like the padded batch."""
    torch.manual_seed(0)
    lengths = [4, 2, 5]
    rows = [torch.randn(n, 32) for n in lengths]
    layers = [[torch.randn(n, 32) for n in lengths] for _ in range(3)]
    padded = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)
    mask = (torch.arange(5)[None] < torch.tensor(lengths)[:, None]).long()
    cu = torch.tensor([0, 4, 6, 11])
    for name in sorted(POOLINGS):
        module = create_pooling(name, 32, num_layers=2).eval()
        padded_features = {"token_embeddings": padded, "attention_mask": mask,
                           "all_layer_embeddings": tuple(torch.nn.utils.rnn.pad_sequence(l, batch_first=True)
                                                         for l in layers)}
        flat_features = {"token_embeddings": torch.cat(rows)[None], "cu_seq_lens_q": cu,
                         "all_layer_embeddings": tuple(torch.cat(l)[None] for l in layers)}
        a = module(padded_features)["sentence_embedding"]
        b = module(flat_features)["sentence_embedding"]
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5, msg=name)


@pytest.mark.parametrize("name", ["latent_attention", "nv_embed", "mltp"])
def test_attention_heads_ignore_padding_and_batch_mates(name):
    """A text's embedding and gradients are the same alone or padded in a batch, whatever the padding holds."""
    torch.manual_seed(0)
    module = create_pooling(name, 64, num_layers=2)
    lengths = [5, 1, 3]
    rows = [torch.randn(n, 64) for n in lengths]
    layers = [[torch.randn(n, 64) for n in lengths] for _ in range(3)]
    mask = (torch.arange(7)[None] < torch.tensor(lengths)[:, None]).long()

    def padded(pieces):  # garbage, not zeros, in the padding
        out = torch.randn(len(pieces), 7, 64) * 100
        out[mask.bool()] = torch.cat(pieces)
        return out

    def pooled_with_grads(features):
        module.zero_grad()
        out = module(features)["sentence_embedding"]
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        return out.detach(), {k: p.grad.clone() for k, p in module.named_parameters()}

    together, together_grads = pooled_with_grads({
        "token_embeddings": padded(rows), "attention_mask": mask,
        "all_layer_embeddings": tuple(padded(layer) for layer in layers)})
    alone = []
    alone_grads = {k: torch.zeros_like(p) for k, p in module.named_parameters()}
    for i, n in enumerate(lengths):
        weights = torch.linspace(-1, 1, together.numel()).view_as(together)[i]
        module.zero_grad()
        out = module({"token_embeddings": rows[i][None], "attention_mask": torch.ones(1, n, dtype=torch.long),
                      "all_layer_embeddings": tuple(layer[i][None] for layer in layers)})["sentence_embedding"]
        (out[0] * weights).sum().backward()
        alone.append(out.detach())
        for k, p in module.named_parameters():
            alone_grads[k] += p.grad
    torch.testing.assert_close(torch.cat(alone), together, atol=1e-5, rtol=1e-5)
    for k, grad in together_grads.items():
        torch.testing.assert_close(alone_grads[k], grad, atol=1e-5, rtol=1e-4, msg=k)


def test_few_query_attention_equals_attention_over_projected_tokens():
    """The latent heads' attention, computed with the queries moved into the context space, is the textbook one:
    keys and values projected from every token. Same output, same gradients."""
    torch.manual_seed(0)
    block = CrossAttentionBlock(64, num_heads=4, ffn_multiplier=2)
    latents = torch.randn(1, 3, 64, requires_grad=True)
    context = torch.randn(5, 9, 64) * 3
    mask = torch.arange(9)[None] < torch.tensor([9, 1, 4, 7, 2])[:, None]
    results = []
    for attend in (block._attend, block._attend_few_queries):
        block.zero_grad()
        latents.grad = None
        q = block._split_heads(block.to_q(block.norm_queries(latents)))
        out = attend(q, block.norm_context(context), mask)  # (batch, queries, dim)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        results.append((out.detach(), latents.grad.clone(), {k: p.grad for k, p in block.named_parameters()
                                                            if p.grad is not None}))
    (projected, projected_latent_grad, projected_grads), (few, few_latent_grad, few_grads) = results
    assert few.shape == (5, 3, 64)
    torch.testing.assert_close(few, projected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(few_latent_grad, projected_latent_grad, atol=1e-5, rtol=1e-4)
    assert projected_grads.keys() == few_grads.keys()
    for k, grad in projected_grads.items():
        torch.testing.assert_close(few_grads[k], grad, atol=1e-5, rtol=1e-4, msg=k)


def test_every_module_is_a_sentence_transformers_module_with_a_dimension():
    from sentence_transformers.base.modules.module import Module

    for name, cls in POOLINGS.items():
        module = create_pooling(name, 96, num_layers=4)
        assert isinstance(module, Module) and isinstance(module, PoolingModule)
        assert module.get_embedding_dimension() == 96
        assert name in repr(module) or cls.__name__ in repr(module)


def test_an_unloadable_base_model_is_explained(capsys):
    from st_pooling.cli import main

    with pytest.raises(FileNotFoundError, match="packaged short name: minilm, smollm2"):
        build_model("/nonexistent/model", "mean")
    assert main(["compare", "--base", "/nonexistent", "--output", "/tmp/unused", "--no-progress"]) == 2
    assert "cannot load the base model '/nonexistent'" in capsys.readouterr().err


def test_the_base_flag_keeps_model_as_its_old_name_with_a_note(capsys):
    """compare, train, tune and sweep take the base as --base; --model (which names a saved SentenceTransformer in
    index and export) still works there, read as --base, and says so."""
    from st_pooling.cli import build_parser

    parser = build_parser()
    for command in ("compare", "train", "tune", "sweep"):
        required = ["--output", "out"] if command == "sweep" else []
        args = parser.parse_args([command, "--model", "smollm2", *required])
        assert args.base == "smollm2", command
        assert "takes the base model as --base" in capsys.readouterr().err
        assert parser.parse_args([command, "--base", "smollm2", *required]).base == "smollm2"
        assert capsys.readouterr().err == ""
