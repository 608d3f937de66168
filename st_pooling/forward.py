"""The one place the base model runs: each text once, longest first, batch after batch.

Every command that needs the base's output for many texts goes through :func:`forward_batches` and consumes what it
yields in its own way: ``compare`` pools each batch with every compared pooling and keeps the sentence embeddings
(:class:`st_pooling.evaluation.shared_forward.SharedForwardEmbedder`), the training fast path keeps what a head extracts
(:func:`st_pooling.training.features.build_feature_cache`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm


def length_batches(texts: Sequence[str], batch_size: int) -> list[list[int]]:
    """Row indices of ``texts`` in batches of similar length, longest first (the least padding per batch)."""
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]


def tokenized_batches(transformer: nn.Module, texts: Sequence[str], batches: list[list[int]]) -> list[dict[str, Any]]:
    """Each batch of ``texts`` as the transformer's inputs, tokenized once (e.g. to count tokens before the forward
    pass, then passed to :func:`forward_batches` as ``inputs``)."""
    return [transformer.preprocess([texts[i] for i in rows]) for rows in batches]


def to_device(features: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {key: value.to(device) if isinstance(value, Tensor) else value for key, value in features.items()}


def forward_batches(transformer: nn.Module, texts: Sequence[str], *, batch_size: int, device: torch.device,
                    desc: str = "forward", show_progress_bar: bool = True,
                    batches: list[list[int]] | None = None, inputs: Sequence[dict[str, Any]] | None = None
                    ) -> Iterator[tuple[list[int], dict[str, Any]]]:
    """``(rows, output)`` for each batch: the row indices of ``texts`` in it and the transformer's output features,
    computed without gradients in eval mode (the transformer's mode is restored afterwards). ``batches`` overrides the
    default grouping (:func:`length_batches`); ``inputs``, the batches already tokenized (:func:`tokenized_batches`),
    saves tokenizing them again."""
    batches = length_batches(texts, batch_size) if batches is None else batches
    was_training = transformer.training
    transformer.to(device).eval()
    try:
        with torch.inference_mode():
            for position, rows in enumerate(tqdm(batches, desc=desc,
                                                 disable=not show_progress_bar or len(batches) < 2)):
                features = inputs[position] if inputs is not None else \
                    transformer.preprocess([texts[i] for i in rows])
                yield rows, transformer(to_device(features, device))
    finally:
        transformer.train(was_training)
