"""Parameter-free poolings: mean, max, first token (CLS), last token (EOS), position-weighted mean."""

from __future__ import annotations

from torch import Tensor

from st_pooling import functional as F
from st_pooling.modules.base import PoolingModule, ReductionPooling
from st_pooling.modules.registry import register_pooling


@register_pooling
class MeanPooling(ReductionPooling):
    """Mean of the real tokens' states."""

    name = "mean"

    def pool(self, states: Tensor, mask: Tensor) -> Tensor:
        return F.masked_mean(states, mask)


@register_pooling
class MaxPooling(ReductionPooling):
    """Channel-wise max over the real tokens."""

    name = "max"

    def pool(self, states: Tensor, mask: Tensor) -> Tensor:
        return F.masked_max(states, mask)


@register_pooling
class WeightedMeanPooling(ReductionPooling):
    """Mean with weights 1..n by token position (SGPT, LLM2Vec): later tokens of a causal model saw more."""

    name = "weighted_mean"

    def pool(self, states: Tensor, mask: Tensor) -> Tensor:
        return F.position_weighted_mean(states, mask)


@register_pooling
class CLSPooling(PoolingModule):
    """The first real token's state ([CLS] for BERT), correct under left padding."""

    name = "cls"

    def pool(self, states: Tensor, mask: Tensor) -> Tensor:
        return F.first_token(states, mask)


@register_pooling
class LastTokenPooling(PoolingModule):
    """The last real token's state (the EOS of a decoder), correct under either padding side."""

    name = "last_token"

    def pool(self, states: Tensor, mask: Tensor) -> Tensor:
        return F.last_token(states, mask)
