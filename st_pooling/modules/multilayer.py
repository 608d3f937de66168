"""Multi-layer trainable pooling (MLTP): learnable latents cross-attend to one summary vector per hidden layer."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from st_pooling import functional as F
from st_pooling.modules.base import LAYER_STACK, prompt_free_mask, read_layer_states, read_token_states
from st_pooling.modules.latent import _AttentionHead
from st_pooling.modules.registry import register_pooling

LAYER_SUMMARIES = {"mean": F.masked_mean, "last_token": F.last_token}


@register_pooling
class MultiLayerTrainablePooling(_AttentionHead):
    """MLTP (Tang and Yang 2024): summarise each hidden layer 1..L by a masked mean (bidirectional design) or its
    last real token (causal design), add a learnable layer-position embedding, let learnable latents cross-attend to
    that layer stack, apply a feed-forward and take the mean over latents. Output size = model dimension.

    ``layers`` optionally picks a subset of hidden layers (1-based, layer 0 is the embedding output and is always
    left out, as in the paper). ``exclude_first_token`` leaves each text's first token out of the summaries: in a
    causal decoder it is an attention sink whose state dominates the middle layers. Needs the Transformer to output
    hidden states (``build_model`` turns them on).

    With a native start (``native``, see :class:`~st_pooling.modules.base.PoolingModule`) MLTP starts "on the last
    layer": its untrained output is the native pooling of the last layer's token states (``token_embeddings``, what
    the base's own pooling reads), whatever ``layers`` and ``layer_summary`` are.
    """

    name = "mltp"
    reads = LAYER_STACK
    config_keys: list[str] = _AttentionHead.config_keys + ["num_layers", "layers", "layer_summary",
                                                           "exclude_first_token"]

    def __init__(self, embedding_dimension: int, num_layers: int, layers: list[int] | None = None,
                 layer_summary: str = "mean", num_latents: int | None = None, num_heads: int | None = None,
                 ffn_multiplier: int | None = None, exclude_first_token: bool = False,
                 native: str | None = None, include_prompt: bool = True) -> None:
        super().__init__(embedding_dimension, num_latents, num_heads, ffn_multiplier, native, include_prompt)
        if layer_summary not in LAYER_SUMMARIES:
            raise ValueError(f"layer_summary must be one of {sorted(LAYER_SUMMARIES)}, got {layer_summary!r}")
        self.num_layers = int(num_layers)
        self.layers = sorted(set(layers)) if layers else list(range(1, self.num_layers + 1))
        bad = [layer for layer in self.layers if not 1 <= layer <= self.num_layers]
        if bad:
            raise ValueError(f"layers must lie in 1..{self.num_layers} (the base model's hidden layers), got {bad}")
        self.layer_summary = layer_summary
        self.exclude_first_token = bool(exclude_first_token)
        self.layer_embedding = nn.Parameter(torch.zeros(len(self.layers), embedding_dimension))
        nn.init.normal_(self.layer_embedding, std=0.02)

    def extraction(self) -> dict[str, Any]:
        return {"layers": list(self.layers), "layer_summary": self.layer_summary,
                "exclude_first_token": self.exclude_first_token, "native": self.native}

    def extract(self, features: dict[str, Any]) -> dict[str, Tensor]:
        """``layer_stack``: the per-layer summaries MLTP attends to, (batch, len(layers), dim) in the states' dtype;
        with a native start one more row at the end, the native pooling of the last layer's tokens
        (batch, len(layers) + 1, dim). The frozen-feature cache stores exactly this."""
        layer_states, mask = read_layer_states(features, type(self).__name__)
        if len(layer_states) != self.num_layers + 1:
            raise ValueError(
                f"{type(self).__name__} was built for a base model with {self.num_layers} hidden layers but received "
                f"{len(layer_states) - 1}; rebuild it for this base model with st_pooling.build_model"
            )
        if not self.include_prompt:
            mask = prompt_free_mask(mask, features)
        if self.exclude_first_token:  # a causal decoder's attention sink dominates its middle layers' means
            mask = F.drop_first_token(mask)
        summarise = LAYER_SUMMARIES[self.layer_summary]
        rows = [summarise(layer_states[i], mask) for i in self.layers]
        if self.native is not None:  # the native pooling reads what the base's own pooling reads: token_embeddings
            states, token_mask = read_token_states(features)
            if not self.include_prompt:
                token_mask = prompt_free_mask(token_mask, features)
            rows.append(self.native_pooling.pool(states, token_mask))
        return {"layer_stack": torch.stack(rows, dim=1)}  # (batch, layers [+ 1], dim)

    def head(self, inputs: dict[str, Tensor]) -> Tensor:
        """The layer stack -> (batch, dim); the part of MLTP that training updates."""
        stack = inputs["layer_stack"]
        native = None
        if self.native is not None:
            stack, native = stack[:, :-1], stack[:, -1]
        rows = stack.to(self.latents.dtype) + self.layer_embedding
        learned = self.attend_from_latents(rows, rows.new_ones(rows.shape[:2], dtype=torch.int64))
        pooled = learned if native is None else self.add_to_native(native, learned)
        return pooled.to(stack.dtype)
