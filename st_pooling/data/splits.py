"""Deterministic train/test splitting for data sets that ship without a split."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence

from st_pooling.data.types import ClassificationData, Label


def stratified_split(
    texts: Sequence[str], labels: Sequence[Label], test_fraction: float, seed: int
) -> ClassificationData:
    """Split per label: each label's items are shuffled with ``seed`` and ``round(test_fraction * count)``
    of them go to the test split. Items keep their original order within each split."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be between 0 and 1 (exclusive), got {test_fraction}")
    rng = random.Random(seed)
    by_label: dict[Label, list[int]] = defaultdict(list)
    for index, label in enumerate(labels):
        by_label[label].append(index)
    test_indices: set[int] = set()
    for label in sorted(by_label, key=str):
        members = by_label[label]
        rng.shuffle(members)
        n_test = round(test_fraction * len(members))
        if len(members) >= 2:
            n_test = min(max(n_test, 1), len(members) - 1)
        test_indices.update(members[:n_test])
    train = [i for i in range(len(texts)) if i not in test_indices]
    test = sorted(test_indices)
    return ClassificationData(
        [texts[i] for i in train], [labels[i] for i in train], [texts[i] for i in test], [labels[i] for i in test]
    )
