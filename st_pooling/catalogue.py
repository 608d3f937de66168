"""What ``st-pooling list`` prints, readable without importing torch, sentence-transformers or mteb.

The pooling classes need torch and sentence-transformers, the local tasks need mteb: importing them costs seconds,
and listing names should not. This table repeats what the registry and the task list say;
``tests/test_registration.py`` checks that it equals them, so it cannot drift.
"""

from __future__ import annotations

# (registered name, class name, learnable, reads every hidden layer), in the registry's order
POOLINGS: tuple[tuple[str, str, bool, bool], ...] = (
    ("latent_attention", "LatentAttentionPooling", True, False),
    ("nv_embed", "NVEmbedPooling", True, False),
    ("weighted_sum", "WeightedSumPooling", True, False),
    ("gem", "GeMPooling", True, False),
    ("group_gem", "GroupGeMPooling", True, False),
    ("mltp", "MultiLayerTrainablePooling", True, True),
    ("mean", "MeanPooling", False, False),
    ("max", "MaxPooling", False, False),
    ("weighted_mean", "WeightedMeanPooling", False, False),
    ("cls", "CLSPooling", False, False),
    ("last_token", "LastTokenPooling", False, False),
)

# (task name, mteb task type, part of the embedded default), in the order of evaluation.tasks.LOCAL_TASKS
LOCAL_TASKS: tuple[tuple[str, str, bool], ...] = (
    ("LeeSTS", "STS", True),
    ("PangLeePolarityClassification", "Classification", True),
    ("MiniNewsgroupsClustering", "Clustering", True),
    ("LeeRetrieval", "Retrieval", True),
    ("LocalSTSBenchmark", "STS", False),
    ("LocalSICK", "STS", False),
    ("LocalSST2", "Classification", False),
    ("LocalMR", "Classification", False),
    ("LocalBanking77Classification", "Classification", False),
    ("LocalBanking77Clustering", "Clustering", False),
    ("Local20NewsgroupsClassification", "Classification", False),
    ("Local20NewsgroupsClustering", "Clustering", False),
    ("LocalCranfield", "Retrieval", False),
    ("LocalCISI", "Retrieval", False),
)


def catalogue_lines() -> list[str]:
    """The text of ``st-pooling list``."""
    lines = ["poolings:"]
    for name, class_name, learnable, all_layers in POOLINGS:
        kind = "learnable" if learnable else "parameter-free"
        lines.append(f"  {name:<18} {class_name} ({kind}{', all layers' if all_layers else ''})")
    lines.append("local tasks (* = embedded default):")
    for name, task_type, default in LOCAL_TASKS:
        lines.append(f"  {'*' if default else ' '} {name:<34} {task_type}")
    return lines
