"""st-pooling: research-grade pooling layers for sentence-transformers, and the tools to prove which is best.

``import st_pooling`` is light: the public names below are imported when first used, and st-pooling's module classes
become loadable by plain ``SentenceTransformer(path)`` as soon as sentence-transformers is imported
(:mod:`st_pooling.registration`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from st_pooling.lazy import lazy_exports
from st_pooling.registration import install_when_sentence_transformers_is_imported

__version__ = "0.1.0"

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "st_pooling.models": ["build_model", "native_pooling_of", "resolve_base"],
    "st_pooling.loading": ["load_model"],
    "st_pooling.modules": [
        "POOLINGS", "PoolingModule", "PoolingSpec", "create_pooling",
        "MeanPooling", "MaxPooling", "CLSPooling", "LastTokenPooling", "WeightedMeanPooling",
        "WeightedSumPooling", "GeMPooling", "GroupGeMPooling",
        "LatentAttentionPooling", "NVEmbedPooling", "MultiLayerTrainablePooling",
    ],
})

install_when_sentence_transformers_is_imported()


if TYPE_CHECKING:  # what the names above are, for type checkers and editors
    from st_pooling.loading import load_model
    from st_pooling.models import build_model, native_pooling_of, resolve_base
    from st_pooling.modules import (
        POOLINGS,
        CLSPooling,
        GeMPooling,
        GroupGeMPooling,
        LastTokenPooling,
        LatentAttentionPooling,
        MaxPooling,
        MeanPooling,
        MultiLayerTrainablePooling,
        NVEmbedPooling,
        PoolingModule,
        PoolingSpec,
        WeightedMeanPooling,
        WeightedSumPooling,
        create_pooling,
    )
