"""The standard sentence-transformers losses, picked by name or by the kind of training data.

Both training paths use these same loss objects: the trainer path calls ``loss(features, labels)`` (which embeds the
columns with the model), the fast path calls ``loss.compute_loss_from_embeddings(embeddings, labels)`` with the head's
embeddings of cached features. So the loss math is sentence-transformers' own, shared, not re-implemented.
"""

from __future__ import annotations

from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.losses import AnglELoss, CoSENTLoss, MultipleNegativesRankingLoss
from torch import nn

from st_pooling.training.data import PairData, ScoredPairData, TrainingData

LOSSES: dict[str, type[nn.Module]] = {
    "mnrl": MultipleNegativesRankingLoss,
    "cosent": CoSENTLoss,
    "angle": AnglELoss,
}
LOSS_DATA_KINDS = {"mnrl": PairData, "cosent": ScoredPairData, "angle": ScoredPairData}
DEFAULT_SCALE = 20.0


def default_loss_name(data: TrainingData) -> str:
    """MultipleNegativesRankingLoss for pairs and triplets, CoSENT for scored pairs."""
    return "cosent" if isinstance(data, ScoredPairData) else "mnrl"


def make_loss(name: str | None, model: SentenceTransformer, data: TrainingData,
              scale: float = DEFAULT_SCALE) -> nn.Module:
    """The loss ``name`` ('mnrl', 'cosent', 'angle'; default by the data's kind) for ``model``.

    Raises ValueError when the loss does not fit the data (e.g. CoSENT on unscored pairs).
    """
    name = (name or default_loss_name(data)).lower()
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    expected = LOSS_DATA_KINDS[name]
    if not isinstance(data, expected):
        what = "scored pairs (text1, text2, score)" if expected is ScoredPairData else \
            "(anchor, positive[, negative]) rows"
        raise ValueError(f"loss {name!r} trains on {what}, but the training data are {data.kind} "
                         f"({data.source or 'given data'}); use loss {default_loss_name(data)!r} for them")
    return LOSSES[name](model, scale=scale)
