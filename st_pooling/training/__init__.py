"""Training pooling heads: data readers, the standard losses, the trainer API and the frozen-feature fast path."""

from st_pooling.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "st_pooling.training.data": ["PairData", "ScoredPairData", "TrainingData", "load_training_data",
                                 "read_training_file", "same_label_pairs", "sick_nli_pairs", "sick_scored_pairs",
                                 "stsb_scored_pairs"],
    "st_pooling.training.features": ["FeatureCache", "build_feature_cache"],
    "st_pooling.training.fast_path": ["CachedHeadEmbedder", "train_head_on_cache"],
    "st_pooling.training.losses": ["make_loss"],
    "st_pooling.training.trainer": ["TrainConfig", "TrainResult", "train_model", "train_pooling"],
})
