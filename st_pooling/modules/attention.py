"""Building blocks of the attention heads: masked multi-head cross-attention and a pre-norm GEGLU feed-forward."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as torch_f


def default_num_heads(dim: int) -> int:
    """Heads of 64 channels where that divides ``dim``, else the largest divisor of ``dim`` up to ``dim // 64``."""
    target = max(1, dim // 64)
    return next(heads for heads in range(target, 0, -1) if dim % heads == 0)


class GEGLUFeedForward(nn.Module):
    """Pre-norm feed-forward with a GELU-gated linear unit: ``W2 (gelu(W_g x) * W_v x)``."""

    def __init__(self, dim: int, multiplier: int = 4) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.project_in = nn.Linear(dim, 2 * multiplier * dim)
        self.project_out = nn.Linear(multiplier * dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        value, gate = self.project_in(self.norm(x)).chunk(2, dim=-1)
        return self.project_out(value * torch_f.gelu(gate))


class CrossAttentionBlock(nn.Module):
    """Pre-norm cross-attention with residual, then a pre-norm GEGLU feed-forward with residual (Perceiver style).

    ``queries`` (batch, q, dim) attend to ``context`` (batch, c, dim) where ``context_mask`` (batch, c) is 1.
    ``queries`` may have batch 1 (shared learned latents): they are projected once and broadcast over the batch.
    A row whose context is entirely masked attends to nothing and keeps its queries unchanged by attention.
    """

    def __init__(self, dim: int, num_heads: int | None = None, ffn_multiplier: int = 4) -> None:
        super().__init__()
        self.num_heads = num_heads or default_num_heads(dim)
        if dim % self.num_heads:
            raise ValueError(f"num_heads={self.num_heads} must divide the dimension {dim}")
        self.norm_queries = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, dim)
        self.to_kv = nn.Linear(dim, 2 * dim)
        self.to_out = nn.Linear(dim, dim)
        self.feed_forward = GEGLUFeedForward(dim, ffn_multiplier)

    def _split_heads(self, x: Tensor) -> Tensor:
        batch, length, dim = x.shape
        return x.view(batch, length, self.num_heads, dim // self.num_heads).transpose(1, 2)  # (b, heads, len, hd)

    def forward(self, queries: Tensor, context: Tensor, context_mask: Tensor) -> Tensor:
        has_context = context_mask.any(dim=1)  # (batch,)
        # An empty row would make softmax produce NaN: let it see position 0 and discard the result below.
        safe_mask = context_mask.bool().clone()
        safe_mask[~has_context, 0] = True
        q = self._split_heads(self.to_q(self.norm_queries(queries)))  # (batch or 1, heads, q, head_dim)
        context = self.norm_context(context)
        few_shared_queries = len(queries) == 1 and self.num_heads * queries.shape[1] < context.shape[-1]
        attended = (self._attend_few_queries if few_shared_queries else self._attend)(q, context, safe_mask)
        update = self.to_out(attended) * has_context[:, None, None].to(queries.dtype)
        hidden = queries + update  # (batch, q, dim); shared queries broadcast
        return hidden + self.feed_forward(hidden)

    def _attend(self, q: Tensor, context: Tensor, mask: Tensor) -> Tensor:
        """Multi-head attention over the projected context: keys and values ``to_kv(context)``. -> (batch, q, dim)."""
        k, v = self.to_kv(context).chunk(2, dim=-1)
        attended = torch_f.scaled_dot_product_attention(
            q.expand(context.shape[0], -1, -1, -1), self._split_heads(k), self._split_heads(v),
            attn_mask=mask[:, None, None, :],
        )  # (batch, heads, q, head_dim)
        return attended.transpose(1, 2).flatten(2)

    def _attend_few_queries(self, q: Tensor, context: Tensor, mask: Tensor) -> Tensor:
        """The same attention for few shared queries (learned latents, ``q`` of batch 1), without projecting a single
        context token.

        Per head, with ``k = W_k x + b_k`` and ``v = W_v x + b_v``: ``q.k = (q W_k).x + q.b_k``, and as the attention
        weights ``a`` sum to 1, ``sum a v = W_v (sum a x) + b_v``. Each token then costs ``heads * q`` dot products
        instead of a ``dim x 2 dim`` projection. -> (batch, q, dim).
        """
        heads, length, head_dim = q.shape[1:]
        dim = heads * head_dim
        w_k, w_v = self.to_kv.weight.view(2, heads, head_dim, dim).unbind(0)  # (heads, head_dim, dim) each
        b_k, b_v = self.to_kv.bias.view(2, heads, head_dim).unbind(0)  # (heads, head_dim) each
        q_in_context = torch.einsum("hqe,hed->hqd", q[0], w_k).flatten(0, 1)  # (heads * q, dim)
        q_bias = torch.einsum("hqe,he->hq", q[0], b_k).flatten()  # (heads * q,)
        scores = (context @ q_in_context.T + q_bias) / math.sqrt(head_dim)  # (batch, c, heads * q): one matmul
        weights = scores.masked_fill(~mask[..., None], float("-inf")).softmax(dim=1)  # over the context
        # sum a x per head and query; -1 for the batch: len(context) would be baked into an ONNX graph as a constant
        summary = (weights.transpose(1, 2) @ context).view(-1, heads, length, dim)
        return (torch.einsum("bhqd,hed->bqhe", summary, w_v) + b_v).flatten(2)  # (batch, q, dim)


def init_latents(num_latents: int, dim: int) -> nn.Parameter:
    """A learnable latent array (num_latents, dim), small random init."""
    return nn.Parameter(torch.randn(num_latents, dim) * 0.02)
