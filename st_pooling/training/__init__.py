"""Training pooling heads: data readers, the standard losses, the trainer API and the frozen-feature fast path."""

from st_pooling.training.data import (
    PairData,
    ScoredPairData,
    TrainingData,
    load_training_data,
    read_training_file,
    same_label_pairs,
    sick_nli_pairs,
    sick_scored_pairs,
    stsb_scored_pairs,
)
from st_pooling.training.features import FeatureCache, build_feature_cache
from st_pooling.training.fast_path import CachedHeadEmbedder, train_head_on_cache
from st_pooling.training.losses import make_loss
from st_pooling.training.trainer import TrainConfig, TrainResult, train_model, train_pooling

__all__ = [
    "CachedHeadEmbedder", "FeatureCache", "PairData", "ScoredPairData", "TrainConfig", "TrainResult", "TrainingData",
    "build_feature_cache", "load_training_data", "make_loss", "read_training_file", "same_label_pairs",
    "sick_nli_pairs", "sick_scored_pairs", "stsb_scored_pairs", "train_head_on_cache", "train_model",
    "train_pooling",
]
