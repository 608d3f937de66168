"""Learnable reductions: weighted sum of tokens, GeM and group GeM."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from st_pooling import functional as F
from st_pooling.modules.base import ReductionPooling
from st_pooling.modules.registry import register_pooling


@register_pooling
class WeightedSumPooling(ReductionPooling):
    """A learned score per token, a masked softmax over the tokens, the weighted sum of their states.

    The "Weighted Sum" pooling of Xing et al. (2024). The scorer starts at zero, so an untrained module without a
    native start is exactly mean pooling and training moves away from it; with ``native`` it is that pooling plus the
    zero-gated weighted sum (see :class:`~st_pooling.modules.base.PoolingModule`), like every learnable head.
    Parameters: ``dim + 1`` (``2 dim + 1`` with a native start).
    """

    name = "weighted_sum"
    learnable = True
    config_keys: list[str] = ReductionPooling.config_keys + ["native"]

    def __init__(self, embedding_dimension: int, exclude_first_token: bool = False, native: str | None = None,
                 include_prompt: bool = True) -> None:
        super().__init__(embedding_dimension, exclude_first_token, native, include_prompt)
        self.scorer = nn.Linear(embedding_dimension, 1)
        nn.init.zeros_(self.scorer.weight)
        nn.init.zeros_(self.scorer.bias)

    def pool(self, states: Tensor, mask: Tensor) -> Tensor:
        scores = self.scorer(states.to(self.scorer.weight.dtype)).squeeze(-1)  # (batch, seq)
        return F.weighted_sum(states, mask, scores)


class _GeneralizedMeanBase(ReductionPooling):
    """GeM with a learnable exponent, kept in ``[min_p, max_p]`` so it never becomes unstable."""

    learnable = True
    config_keys: list[str] = ["embedding_dimension", "initial_p", "min_p", "max_p", "negatives",
                              "exclude_first_token", "native", "include_prompt"]

    def __init__(self, embedding_dimension: int, initial_p: float = 3.0, min_p: float = 1.0, max_p: float = 8.0,
                 negatives: str = "signed", exclude_first_token: bool = False, num_exponents: int = 1,
                 native: str | None = None, include_prompt: bool = True) -> None:
        super().__init__(embedding_dimension, exclude_first_token, native, include_prompt)
        if not 0 < min_p <= initial_p <= max_p:
            raise ValueError(f"GeM needs 0 < min_p <= initial_p <= max_p, got {min_p}, {initial_p}, {max_p}")
        if negatives not in ("signed", "clamp"):
            raise ValueError(f"negatives must be 'signed' or 'clamp', got {negatives!r}")
        self.initial_p, self.min_p, self.max_p, self.negatives = float(initial_p), float(min_p), float(max_p), negatives
        self.p = nn.Parameter(torch.full((num_exponents,), float(initial_p)))

    def channel_exponents(self) -> Tensor:
        """The exponent of each channel, (dim,) or (1,), clamped to the safe range."""
        return self.p.clamp(self.min_p, self.max_p)

    def pool(self, states: Tensor, mask: Tensor) -> Tensor:
        return F.generalized_mean(states, mask, self.channel_exponents(), negatives=self.negatives)


@register_pooling
class GeMPooling(_GeneralizedMeanBase):
    """Generalized mean ``(mean_i x_i^p)^(1/p)`` per channel with one learnable exponent p (initial 3).

    p = 1 is mean pooling, a large p tends to max pooling. Negative values keep their sign by default
    (``negatives="signed"``, see :func:`st_pooling.functional.generalized_mean`). Parameters: 1 (``dim + 1`` with a
    native start: ``native`` plus the zero-gated GeM, see :class:`~st_pooling.modules.base.PoolingModule`).
    """

    name = "gem"


@register_pooling
class GroupGeMPooling(_GeneralizedMeanBase):
    """GeM with one learnable exponent per group of channels (group GeM, arXiv 2212.04114).

    Channels are split into ``num_groups`` contiguous groups (default: one per 64 channels, the usual size of an
    attention head). Parameters: ``num_groups``.
    """

    name = "group_gem"
    config_keys: list[str] = _GeneralizedMeanBase.config_keys + ["num_groups"]

    def __init__(self, embedding_dimension: int, num_groups: int | None = None, initial_p: float = 3.0,
                 min_p: float = 1.0, max_p: float = 8.0, negatives: str = "signed",
                 exclude_first_token: bool = False, native: str | None = None, include_prompt: bool = True) -> None:
        num_groups = num_groups or max(1, embedding_dimension // 64)
        if embedding_dimension % num_groups:
            raise ValueError(
                f"group_gem splits {embedding_dimension} channels into equal groups, but {num_groups} does not "
                f"divide {embedding_dimension}; pick num_groups among the divisors of {embedding_dimension}"
            )
        super().__init__(embedding_dimension, initial_p, min_p, max_p, negatives, exclude_first_token, num_groups,
                         native, include_prompt)
        self.num_groups = num_groups

    def channel_exponents(self) -> Tensor:
        return super().channel_exponents().repeat_interleave(self.embedding_dimension // self.num_groups)
