"""Ready study designs: the five of Tang and Yang (2024) on a decoder, and the encoder set on MiniLM.

A recipe names a base, a pooling (with options), the decoder attention mode and the training mode. ``build()`` gives
the untrained model, ``config()`` a :class:`TrainConfig` with the recipe's mode and learning rate.

Differences from the paper, on purpose: heads are sized to the base (8 latents, 64-channel heads) instead of 768
latents x 32 heads of 2048; the last-layer trainable pooling attends to every real token of the last layer in both
attention modes (the paper's causal variant attends to the EOS state only, where a single key makes attention
trivial); LoRA r=16, alpha=32, dropout 0.1 on all linear layers, as in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from sentence_transformers import SentenceTransformer

from st_pooling.modules.spec import PoolingSpec
from st_pooling.training.trainer import TrainConfig


@dataclass(frozen=True)
class Recipe:
    """A named study design: a base, a pooling (the package's one :class:`~st_pooling.modules.spec.PoolingSpec`),
    the decoder attention mode and the training mode."""

    name: str
    base: str
    spec: PoolingSpec
    description: str
    attention_mode: str | None = None
    mode: str = "head"  # head | lora | full

    @property
    def pooling(self) -> str:
        return self.spec.pooling

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.spec.options)

    def build(self, max_seq_length: int | None = None, **overrides: Any) -> SentenceTransformer:
        from st_pooling.models import build_model

        return build_model(self.base, self.pooling, attention_mode=self.attention_mode,
                           max_seq_length=max_seq_length, **{**self.options, **overrides})

    def config(self, **changes: Any) -> TrainConfig:
        """The recipe's :class:`TrainConfig`; head-only recipes use the fast path unless told otherwise."""
        changes.setdefault("fast_path", changes.get("mode", self.mode) == "head")
        changes.setdefault("mode", self.mode)
        return replace(TrainConfig(mode=changes["mode"]), **changes)

    @property
    def label(self) -> str:
        return self.name


STUDY_DESIGNS: dict[str, Recipe] = {recipe.name: recipe for recipe in (
    Recipe("eos-causal", "smollm2", PoolingSpec("last_token"),
           "design 1: the EOS (last) token of the causal decoder; no head, so only LoRA on the base can train it",
           attention_mode="causal", mode="lora"),
    Recipe("lasttp-causal", "smollm2", PoolingSpec("latent_attention"),
           "design 2: last-layer trainable pooling (latent cross-attention) over the causal decoder, base frozen",
           attention_mode="causal", mode="head"),
    Recipe("mltp-causal", "smollm2", PoolingSpec("mltp", {"layer_summary": "last_token"}),
           "design 3: multi-layer trainable pooling over each layer's EOS state, causal decoder, base frozen",
           attention_mode="causal", mode="head"),
    Recipe("lasttp-bidirectional", "smollm2", PoolingSpec("latent_attention"),
           "design 4: last-layer trainable pooling, bidirectional attention; the base must adapt (LoRA)",
           attention_mode="bidirectional", mode="lora"),
    Recipe("mltp-bidirectional", "smollm2", PoolingSpec("mltp", {"layer_summary": "mean"}),
           "design 5: MLTP over each layer's masked mean, bidirectional attention; the base must adapt (LoRA)",
           attention_mode="bidirectional", mode="lora"),
)}
"""The five designs of the pooling-and-attention study, on the packaged SmolLM2-135M."""

ENCODER_SET: dict[str, Recipe] = {recipe.name: recipe for recipe in (
    Recipe("minilm-mean", "minilm", PoolingSpec("mean"),
           "mean pooling (MiniLM's own), the reference; nothing to train"),
    Recipe("minilm-weighted-sum", "minilm", PoolingSpec("weighted_sum"),
           "learned token scores, softmax-weighted sum (dim + 1)"),
    Recipe("minilm-gem", "minilm", PoolingSpec("gem"), "GeM with one learnable exponent (signed powers)"),
    Recipe("minilm-latent-attention", "minilm", PoolingSpec("latent_attention"),
           "last-layer latent cross-attention head"),
    Recipe("minilm-mltp", "minilm", PoolingSpec("mltp"), "multi-layer trainable pooling over each layer's masked mean"),
)}
"""The encoder set on the packaged MiniLM, all head-only (the base stays as published)."""

RECIPES: dict[str, Recipe] = {**STUDY_DESIGNS, **ENCODER_SET}


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(f"unknown recipe {name!r}; choose one of: {', '.join(RECIPES)}") from None
