"""Attention heads over the last layer: latent cross-attention (trainable pooling) and NV-Embed latent attention."""

from __future__ import annotations

from torch import Tensor

from st_pooling import functional as F
from st_pooling.modules.attention import CrossAttentionBlock, default_num_heads, init_latents
from st_pooling.modules.base import PoolingModule
from st_pooling.modules.registry import register_pooling


class _AttentionHead(PoolingModule):
    """Shared config and parameters of the heads: a latent array and one cross-attention block (random initial
    values), plus the zero gate of a native start (see :class:`~st_pooling.modules.base.PoolingModule`)."""

    learnable = True
    config_keys: list[str] = ["embedding_dimension", "num_latents", "num_heads", "ffn_multiplier", "native",
                              "include_prompt"]
    default_num_latents: int = 8
    default_ffn_multiplier: int = 2

    def __init__(self, embedding_dimension: int, num_latents: int | None = None, num_heads: int | None = None,
                 ffn_multiplier: int | None = None, native: str | None = None, include_prompt: bool = True) -> None:
        super().__init__(embedding_dimension, native, include_prompt)
        self.num_latents = num_latents or self.default_num_latents
        self.num_heads = num_heads or default_num_heads(embedding_dimension)
        self.ffn_multiplier = ffn_multiplier or self.default_ffn_multiplier
        if self.num_latents < 1:
            raise ValueError(f"num_latents must be >= 1, got {self.num_latents}")
        self.latents = init_latents(self.num_latents, embedding_dimension)
        self.block = CrossAttentionBlock(embedding_dimension, self.num_heads, self.ffn_multiplier)

    def attend_from_latents(self, context: Tensor, context_mask: Tensor) -> Tensor:
        """Latents query ``context`` (batch, c, dim); the mean over latents is the sentence embedding."""
        attended = self.block(self.latents[None], context.to(self.latents.dtype), context_mask)  # (batch, n, dim)
        return attended.mean(dim=1)  # (batch, dim)


@register_pooling
class LatentAttentionPooling(_AttentionHead):
    """Last-layer trainable pooling: learnable latent queries cross-attend to the token states (padding masked).

    The last-layer design of Tang and Yang (2024): pre-norm cross-attention with residual on the latents, a pre-norm
    GEGLU feed-forward with residual, then the mean over latents. Must be trained to be useful, unless it starts
    as the base's own pooling (``native``).
    """

    name = "latent_attention"

    def pool(self, states: Tensor, mask: Tensor) -> Tensor:
        return self.attend_from_latents(states, mask).to(states.dtype)


@register_pooling
class NVEmbedPooling(_AttentionHead):
    """NV-Embed latent attention: each token queries a learnable latent array (keys = values = latents), then
    a feed-forward and the masked mean over tokens. Must be trained to be useful, unless it starts as the base's own
    pooling (``native``)."""

    name = "nv_embed"
    default_num_latents = 32  # NV-Embed uses 512 at d=4096; each latent costs every token an attention score
    default_ffn_multiplier = 1  # this feed-forward runs on every token, not on a few latents

    def pool(self, states: Tensor, mask: Tensor) -> Tensor:
        # Everything before the mean is per token and the latents are shared: run the block once over the real
        # tokens of the whole batch, as one row of queries, and put the results back in place (padding stays 0).
        real = mask.bool()
        tokens = states[real].to(self.latents.dtype)[None]  # (1, real tokens, dim)
        attended = self.block(tokens, self.latents[None], mask.new_ones(1, self.num_latents))[0]
        per_token = attended.new_zeros(*real.shape, attended.shape[-1]).index_put((real,), attended)
        return F.masked_mean(per_token, mask).to(states.dtype)
