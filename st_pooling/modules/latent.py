"""Attention heads over the last layer: latent cross-attention (trainable pooling) and NV-Embed latent attention."""

from __future__ import annotations

from torch import Tensor

from st_pooling import functional as F
from st_pooling.modules.attention import CrossAttentionBlock, default_num_heads, init_latents
from st_pooling.modules.base import PoolingModule
from st_pooling.modules.registry import register_pooling


class _AttentionHead(PoolingModule):
    """Shared config and parameters of the heads: a latent array and one cross-attention block."""

    learnable = True
    config_keys: list[str] = ["embedding_dimension", "num_latents", "num_heads", "ffn_multiplier"]
    default_num_latents: int = 8
    default_ffn_multiplier: int = 2

    def __init__(self, embedding_dimension: int, num_latents: int | None = None, num_heads: int | None = None,
                 ffn_multiplier: int | None = None) -> None:
        super().__init__(embedding_dimension)
        self.num_latents = num_latents or self.default_num_latents
        self.num_heads = num_heads or default_num_heads(embedding_dimension)
        self.ffn_multiplier = ffn_multiplier or self.default_ffn_multiplier
        if self.num_latents < 1:
            raise ValueError(f"num_latents must be >= 1, got {self.num_latents}")
        self.latents = init_latents(self.num_latents, embedding_dimension)
        self.block = CrossAttentionBlock(embedding_dimension, self.num_heads, self.ffn_multiplier)

    def batch_latents(self, batch_size: int) -> Tensor:
        return self.latents.unsqueeze(0).expand(batch_size, -1, -1)  # (batch, latents, dim)

    def attend_from_latents(self, context: Tensor, context_mask: Tensor) -> Tensor:
        """Latents query ``context`` (batch, c, dim); the mean over latents is the sentence embedding."""
        attended = self.block(self.batch_latents(context.shape[0]), context.to(self.latents.dtype), context_mask)
        return attended.mean(dim=1)  # (batch, dim)


@register_pooling
class LatentAttentionPooling(_AttentionHead):
    """Last-layer trainable pooling: learnable latent queries cross-attend to the token states (padding masked).

    The last-layer design of Tang and Yang (2024): pre-norm cross-attention with residual on the latents, a pre-norm
    GEGLU feed-forward with residual, then the mean over latents. Must be trained to be useful.
    """

    name = "latent_attention"

    def pool(self, states: Tensor, mask: Tensor) -> Tensor:
        return self.attend_from_latents(states, mask).to(states.dtype)


@register_pooling
class NVEmbedPooling(_AttentionHead):
    """NV-Embed latent attention: each token queries a learnable latent array (keys = values = latents), then
    a feed-forward and the masked mean over tokens. Must be trained to be useful."""

    name = "nv_embed"
    default_num_latents = 32  # NV-Embed uses 512 at d=4096; each latent costs every token an attention score
    default_ffn_multiplier = 1  # this feed-forward runs on every token, not on a few latents

    def pool(self, states: Tensor, mask: Tensor) -> Tensor:
        tokens = states.to(self.latents.dtype)
        latents = self.batch_latents(states.shape[0])
        all_latents = mask.new_ones(latents.shape[:2])
        attended = self.block(tokens, latents, all_latents)  # (batch, seq, dim)
        return F.masked_mean(attended, mask).to(states.dtype)
