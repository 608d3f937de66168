"""Pooling modules: each a sentence-transformers module registered under a short name."""

from st_pooling.modules.base import PoolingModule, ReductionPooling
from st_pooling.modules.latent import LatentAttentionPooling, NVEmbedPooling
from st_pooling.modules.learnable import GeMPooling, GroupGeMPooling, WeightedSumPooling
from st_pooling.modules.multilayer import MultiLayerTrainablePooling
from st_pooling.modules.registry import POOLINGS, create_pooling, parameter_free_names, pooling_class
from st_pooling.modules.spec import PoolingSpec
from st_pooling.modules.simple import CLSPooling, LastTokenPooling, MaxPooling, MeanPooling, WeightedMeanPooling

__all__ = [
    "POOLINGS", "create_pooling", "parameter_free_names", "pooling_class", "PoolingModule", "PoolingSpec",
    "ReductionPooling",
    "MeanPooling", "MaxPooling", "CLSPooling", "LastTokenPooling", "WeightedMeanPooling",
    "WeightedSumPooling", "GeMPooling", "GroupGeMPooling",
    "LatentAttentionPooling", "NVEmbedPooling", "MultiLayerTrainablePooling",
]
