"""Which rows each training step sees: the trainer path's batch order, reproduced for the loops that run without it.

The trainer path (sentence-transformers' ``SentenceTransformerTrainer``) draws batches with a batch sampler chosen by
the data: pairs and triplets (in-batch negatives) with ``NoDuplicatesBatchSampler``, so no text appears twice in a
batch, scored pairs with a plain random order. The fast path, ``search`` and ``tune`` train on cached features in a
loop of their own; they take their batches from :func:`epoch_batches`, which builds the same sampler with the same
arguments and epoch, so every loop takes the same steps as the trainer for every data kind.
"""

from __future__ import annotations

import itertools

import torch
from sentence_transformers.base.data_collator import DEFAULT_LABEL_COLUMNS
from sentence_transformers.base.sampler import BatchSamplers, NoDuplicatesBatchSampler

from st_pooling.training.data import PairData, TrainingData


def batch_sampler_kind(data: TrainingData) -> BatchSamplers:
    """The trainer's batch sampler for ``data``: no duplicate texts in a batch where the other rows are negatives."""
    return BatchSamplers.NO_DUPLICATES if isinstance(data, PairData) else BatchSamplers.BATCH_SAMPLER


def epoch_batches(data: TrainingData, batch_size: int, seed: int, epoch: int,
                  every_batch: bool = False) -> list[list[int]]:
    """The row indices of every batch of epoch ``epoch`` (0-based), in the order the trainer path takes them.

    * Pairs and triplets: sentence-transformers' ``NoDuplicatesBatchSampler`` over ``data.to_dataset()``, built with
      the trainer's arguments (its generator seeded with ``seed``, ``seed=seed``, the last partial batch kept) and
      moved to ``epoch`` as the trainer moves it. Where repeated texts force the sampler to yield more batches than
      its length says, the trainer takes only that many steps per epoch (transformers' loop counts
      ``len(dataloader)``), and so does every loop here: the extra batches are left out, unless ``every_batch`` (the
      trainer's evaluation loop takes them all: the dev loss is read from epoch 0 with ``every_batch``).
    * Scored pairs: a random permutation seeded with ``seed + epoch`` (what accelerate's seedable sampler under the
      trainer's ``RandomSampler`` draws), cut into batches, the last partial one kept.
    """
    if batch_sampler_kind(data) == BatchSamplers.NO_DUPLICATES:
        sampler = NoDuplicatesBatchSampler(data.to_dataset(), batch_size=batch_size, drop_last=False,
                                           valid_label_columns=list(DEFAULT_LABEL_COLUMNS),
                                           generator=torch.Generator().manual_seed(seed), seed=seed)
        sampler.set_epoch(epoch)
        return [list(batch) for batch in itertools.islice(sampler, None if every_batch else len(sampler))]
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed + epoch)).tolist()
    return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]


class BatchStream:
    """Batches of ``data`` epoch after epoch (:func:`epoch_batches`), for loops that step rather than run epochs.

    Its position (``epoch``, ``batch``) is plain integers, so a checkpoint stores it as JSON-safe state and a resumed
    stream continues with exactly the batch it would have drawn next.
    """

    def __init__(self, data: TrainingData, batch_size: int, seed: int) -> None:
        self.data, self.batch_size, self.seed = data, batch_size, seed
        self.epoch, self.batch = 0, 0
        self._batches: list[list[int]] | None = None

    def next(self) -> list[int]:
        """The next batch's row indices."""
        if self._batches is None:
            self._batches = epoch_batches(self.data, self.batch_size, self.seed, self.epoch)
        if self.batch >= len(self._batches):
            self.epoch, self.batch = self.epoch + 1, 0
            self._batches = epoch_batches(self.data, self.batch_size, self.seed, self.epoch)
        rows = self._batches[self.batch]
        self.batch += 1
        return rows

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batch": self.batch}

    def restore(self, state: dict[str, int]) -> None:
        self.epoch, self.batch, self._batches = int(state["epoch"]), int(state["batch"]), None
