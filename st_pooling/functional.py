"""Pure tensor functions for masked pooling: the math of every st-pooling module, written once.

Conventions, shared by every function here:

* ``states`` is ``(batch, seq, dim)``; ``mask`` is ``(batch, seq)`` with 1 for real tokens and 0 for padding.
  Padding may sit on either side (or anywhere): only the mask decides what is real.
* Work is done in float32 (or float64 when the input is float64) and the result is returned in the input dtype,
  so fp16/bf16 states neither overflow nor lose the accumulation.
* A row with no real token (an empty mask) pools to a zero vector, never to NaN or -inf.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype reductions run in: float32 for half precision, the input's own otherwise."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _float_mask(mask: Tensor, dtype: torch.dtype) -> Tensor:
    return mask.to(dtype).unsqueeze(-1)  # (batch, seq, 1)


def masked_sum(states: Tensor, weights: Tensor) -> Tensor:
    """Sum of token states weighted by ``weights`` (batch, seq); returns (batch, dim) in the compute dtype."""
    dtype = compute_dtype(states.dtype)
    return torch.einsum("bsd,bs->bd", states.to(dtype), weights.to(dtype))


def masked_mean(states: Tensor, mask: Tensor) -> Tensor:
    """Mean over real tokens. (batch, seq, dim) -> (batch, dim)."""
    dtype = compute_dtype(states.dtype)
    weights = mask.to(dtype)
    counts = weights.sum(dim=1, keepdim=True).clamp_min(1.0)  # (batch, 1)
    return (masked_sum(states, weights) / counts).to(states.dtype)


def masked_max(states: Tensor, mask: Tensor) -> Tensor:
    """Channel-wise max over real tokens. (batch, seq, dim) -> (batch, dim)."""
    real = _float_mask(mask, states.dtype).bool()
    filled = states.masked_fill(~real, torch.finfo(states.dtype).min)
    pooled = filled.max(dim=1).values
    has_tokens = mask.any(dim=1, keepdim=True)
    return torch.where(has_tokens, pooled, torch.zeros_like(pooled))


def first_real_index(mask: Tensor) -> Tensor:
    """Index of each row's first real token (0 for an empty row). (batch, seq) -> (batch,)."""
    return mask.to(torch.int32).argmax(dim=1)


def last_real_index(mask: Tensor) -> Tensor:
    """Index of each row's last real token (0 for an empty row). (batch, seq) -> (batch,)."""
    seq_len = mask.shape[1]
    return (seq_len - 1 - mask.flip(1).to(torch.int32).argmax(dim=1)) * mask.any(dim=1)


def gather_tokens(states: Tensor, index: Tensor, mask: Tensor) -> Tensor:
    """The state at ``index`` (batch,) in each row; zero for rows without real tokens. -> (batch, dim)."""
    picked = states[torch.arange(states.shape[0], device=states.device), index]  # (batch, dim)
    return picked * mask.any(dim=1, keepdim=True).to(states.dtype)


def first_token(states: Tensor, mask: Tensor) -> Tensor:
    """The first real token's state (CLS for BERT), correct under left padding."""
    return gather_tokens(states, first_real_index(mask), mask)


def last_token(states: Tensor, mask: Tensor) -> Tensor:
    """The last real token's state (EOS for decoders), correct under either padding side."""
    return gather_tokens(states, last_real_index(mask), mask)


def token_positions(mask: Tensor) -> Tensor:
    """1-based position of each real token among the real tokens of its row; 0 on padding. (batch, seq)."""
    real = mask.to(torch.int64)
    return real.cumsum(dim=1) * real


def position_weighted_mean(states: Tensor, mask: Tensor) -> Tensor:
    """Mean with weights 1..n over the real tokens (SGPT / LLM2Vec ``weighted_mean``)."""
    dtype = compute_dtype(states.dtype)
    weights = token_positions(mask).to(dtype)
    total = weights.sum(dim=1, keepdim=True).clamp_min(1.0)
    return (masked_sum(states, weights) / total).to(states.dtype)


def masked_softmax(scores: Tensor, mask: Tensor) -> Tensor:
    """Softmax over real tokens only; an empty row gets all-zero weights. (batch, seq) -> (batch, seq)."""
    dtype = compute_dtype(scores.dtype)
    real = mask.bool()
    logits = scores.to(dtype).masked_fill(~real, torch.finfo(dtype).min)
    weights = torch.softmax(logits, dim=1)
    return weights * real.to(dtype)


def weighted_sum(states: Tensor, mask: Tensor, scores: Tensor) -> Tensor:
    """Sum of token states weighted by a masked softmax of per-token ``scores`` (batch, seq)."""
    return masked_sum(states, masked_softmax(scores, mask)).to(states.dtype)


def generalized_mean(
    states: Tensor, mask: Tensor, p: Tensor, eps: float = 1e-6, negatives: str = "signed"
) -> Tensor:
    """Masked generalized mean (GeM) per channel: ``(mean_i x_i^p)^(1/p)``.

    ``p`` is a scalar or a per-channel tensor broadcastable to ``(dim,)``. p = 1 is the mean; a large p tends to the
    max. Transformer states are signed, so ``negatives`` chooses what a negative value means:

    * ``"signed"`` (default): sign-preserving powers, ``sign(x)|x|^p`` averaged, then ``sign(m)|m|^(1/p)``. It keeps
      every value's contribution; p = 1 is exactly the mean and a large p tends to the value of largest magnitude.
    * ``"clamp"``: the CNN recipe (cirtorch): clamp to ``eps`` first, which discards every negative value.

    The math is scale-equivariant, so each channel is divided by its largest magnitude before the powers and
    multiplied back after: large activations (decoder attention sinks) cannot overflow even in float32.
    """
    if negatives not in ("signed", "clamp"):
        raise ValueError(f"negatives must be 'signed' or 'clamp', got {negatives!r}")
    dtype = compute_dtype(states.dtype)
    x = states.to(dtype)
    real = _float_mask(mask, dtype)  # (batch, seq, 1)
    p = p.to(dtype)
    if negatives == "clamp":
        x = x.clamp_min(eps)
    x = torch.where(real.bool(), x, torch.zeros((), dtype=dtype))  # padding must not reach the powers
    scale = x.abs().amax(dim=1, keepdim=True).clamp_min(eps)  # (batch, 1, dim)
    x = x / scale
    powered = torch.sign(x) * x.abs().clamp_min(eps).pow(p)  # (batch, seq, dim)
    counts = real.sum(dim=1).clamp_min(1.0)  # (batch, 1)
    mean_power = (powered * real).sum(dim=1) / counts  # (batch, dim)
    root = torch.sign(mean_power) * mean_power.abs().clamp_min(eps).pow(1.0 / p)
    pooled = root * scale.squeeze(1)
    return (pooled * mask.any(dim=1, keepdim=True).to(dtype)).to(states.dtype)


def drop_first_token(mask: Tensor) -> Tensor:
    """A copy of ``mask`` without each row's first real token (decoder attention sinks), unless it is the only one."""
    positions = token_positions(mask)
    keep = positions != 1
    single = mask.sum(dim=1, keepdim=True) <= 1
    return (mask.bool() & (keep | single)).to(mask.dtype)


def drop_leading_tokens(mask: Tensor, count: int) -> Tensor:
    """A copy of ``mask`` without each row's first ``count`` real tokens (an instruction prompt), any padding side."""
    return (token_positions(mask) > count).to(mask.dtype)


def pad_token_rows(rows: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """Per-text token states ``[(tokens_i, dim), ...]`` -> right-padded ``(batch, max_len, dim)`` states and their
    ``(batch, max_len)`` mask: the padded layout every pooling reads."""
    states = torch.nn.utils.rnn.pad_sequence(list(rows), batch_first=True)  # (batch, max_len, dim)
    lengths = torch.tensor([len(row) for row in rows], device=states.device)
    mask = (torch.arange(states.shape[1], device=states.device)[None, :] < lengths[:, None]).to(torch.int64)
    return states, mask


def unflatten(flat: Tensor, cu_seq_lens: Tensor) -> tuple[Tensor, Tensor]:
    """Turn the unpadded layout into the padded one.

    ``flat`` is ``(1, total_tokens, dim)`` (or ``(total_tokens, dim)``) with sequence boundaries ``cu_seq_lens``
    ``(batch + 1,)``, as sentence-transformers produces with flash-attention unpadding. Returns right-padded
    ``(batch, max_len, dim)`` states and their ``(batch, max_len)`` mask.
    """
    tokens = flat.reshape(-1, flat.shape[-1])  # (total_tokens, dim)
    lengths = (cu_seq_lens[1:] - cu_seq_lens[:-1]).tolist()
    return pad_token_rows(torch.split(tokens, lengths, dim=0))
