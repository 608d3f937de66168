"""st-pooling: research-grade pooling layers for sentence-transformers, and the tools to prove which is best."""

from st_pooling.loading import load_model, register_module_classes
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

__version__ = "0.1.0"

from st_pooling.decoders.transformer import DecoderTransformer  # noqa: E402

register_module_classes(*POOLINGS.values(), DecoderTransformer)

__all__ = [
    "build_model", "load_model", "native_pooling_of", "resolve_base", "create_pooling", "POOLINGS", "PoolingModule", "PoolingSpec",
    "MeanPooling", "MaxPooling", "CLSPooling", "LastTokenPooling", "WeightedMeanPooling",
    "WeightedSumPooling", "GeMPooling", "GroupGeMPooling",
    "LatentAttentionPooling", "NVEmbedPooling", "MultiLayerTrainablePooling",
]
