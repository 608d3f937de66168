"""The one place the base model runs: each text once, longest first, batch after batch.

Every command that needs the base's output for many texts goes through :func:`forward_batches` and consumes what it
yields in its own way: ``compare`` pools each batch with every compared pooling and keeps the sentence embeddings
(:class:`st_pooling.evaluation.shared_forward.SharedForwardEmbedder`), the training fast path keeps what a head extracts
(:func:`st_pooling.training.features.build_feature_cache`). :func:`encode_pool` spreads a model's encoding over
several processes (devices) with sentence-transformers' own multi-process pool.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
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


class PoolingsTogether(nn.Module):
    """Every pooling applied to one forward pass's features, each normalized if asked, side by side:
    ``sentence_embedding`` of shape (batch, poolings x dim). compare's head in its encode processes (defined here, so
    a worker that unpickles it imports nothing heavier than the poolings)."""

    def __init__(self, poolings: Sequence[nn.Module], normalize: bool) -> None:
        super().__init__()
        self.poolings, self.normalize = nn.ModuleList(poolings), normalize

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        pooled = []
        for pooling in self.poolings:
            embedding = pooling(dict(features))["sentence_embedding"].float()  # (batch, dim)
            pooled.append(nn.functional.normalize(embedding, p=2, dim=1) if self.normalize else embedding)
        features["sentence_embedding"] = torch.cat(pooled, dim=1)  # (batch, poolings x dim)
        return features


class RegisterCapturesInWorker(nn.Module):
    """Passes the features through; when unpickled in a pool worker, builds the base's model class once on the meta
    device (no memory, no weights) so that transformers registers, in that process, which outputs (every layer's
    hidden states) the class can capture. Public APIs only: the class, its config and torch's meta device."""

    def __init__(self, transformer: nn.Module) -> None:
        super().__init__()
        auto_model = getattr(transformer, "model", None)
        self._model_class = type(auto_model) if auto_model is not None else None
        self._config = getattr(auto_model, "config", None)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        if self._model_class is not None and self._config is not None:
            with torch.device("meta"):
                self._model_class(self._config)

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return features


@contextmanager
def encode_pool(model: Any, devices: Sequence[str]) -> Iterator[tuple[Any, dict[str, Any]]]:
    """sentence-transformers' multi-process pool (``start_multi_process_pool``) on ``devices`` (``["cuda:0",
    "cuda:1"]``, or ``["cpu"] * N``), yielding ``(pool_model, pool)``: encode with ``pool_model.encode(texts,
    pool=pool)`` (or ``encode_document``/``encode_query``), which equals ``model``'s encoding.

    The pool sends the model to each worker by pickling it, which transformers (5.x) does not fully support for a
    base that returns every layer's hidden states (MLTP): a model that has run installs output-capturing hooks that
    are local functions (unpicklable), and a worker that only unpickles a model never runs the model class's
    ``__init__``, which is where transformers registers what the class can capture, so the worker's base returns no
    hidden states. Hence the pool gets a fresh copy of the base (``model[0]`` saved and loaded again, which also shows
    that its settings, such as ``output_hidden_states`` in its config.json, are saved with it) followed by
    :class:`RegisterCapturesInWorker`; the modules after the base are shared as they are. CPU workers get
    ``cores // N`` torch threads each (the environment's ``OMP_NUM_THREADS`` wins) rather than every core each."""
    import tempfile

    from sentence_transformers import SentenceTransformer

    if not devices:
        raise ValueError("give at least one device for the encode processes")
    with tempfile.TemporaryDirectory(prefix="st-pooling-encode-") as folder:
        SentenceTransformer(modules=[model[0]], device="cpu").save(folder, create_model_card=False)
        base = SentenceTransformer(folder, device="cpu")[0]
    pool_model = SentenceTransformer(modules=[base, RegisterCapturesInWorker(base), *list(model)[1:]], device="cpu")
    for key in ("prompts", "default_prompt_name"):  # encode_document / encode_query read these
        setattr(pool_model, key, getattr(model, key, None) or getattr(pool_model, key))
    threads = os.environ.get("OMP_NUM_THREADS")
    cpu_workers = sum(str(device).startswith("cpu") for device in devices)
    if threads is None and cpu_workers:
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // cpu_workers))  # read by each worker
    try:
        pool = pool_model.start_multi_process_pool([str(device) for device in devices])
    finally:
        if threads is None:
            os.environ.pop("OMP_NUM_THREADS", None)
    try:
        yield pool_model, pool
    finally:
        pool_model.stop_multi_process_pool(pool)


def encode_devices(processes: int | None, devices: Sequence[str] | None) -> list[str] | None:
    """The devices of ``--processes N`` (N CPU workers) or ``--devices cuda:0 cuda:1 ...``; None for one process."""
    if processes is not None and devices:
        raise ValueError("give either --processes or --devices, not both")
    if devices:
        return list(devices)
    if processes is not None and processes < 1:
        raise ValueError(f"--processes must be at least 1, got {processes}")
    return ["cpu"] * processes if processes and processes > 1 else None
