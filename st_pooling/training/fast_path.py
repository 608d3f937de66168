"""Head-only training on cached features: the base runs once, then every epoch only touches the head.

The model is the ordinary ``SentenceTransformer`` [Transformer, head, (Normalize)]. The head is trained in place, so
afterwards the same model object (and a saved copy of it) embeds live texts with the trained head.

Loss math is shared with the trainer path: the loss is the same sentence-transformers object
(:func:`st_pooling.training.losses.make_loss`), called through its ``compute_loss_from_embeddings`` with the
embeddings the head makes of cached features, followed by the model's own modules after the head (Normalize). The
trainer path calls the same method after embedding the columns live. Batching and optimisation follow the HF
Trainer's defaults, so both paths take the same steps for every data kind: the trainer's batch order
(:func:`st_pooling.training.batches.epoch_batches`: no duplicate texts in a batch of pairs or triplets, a seeded random
order for scored pairs, the last partial batch kept), fused AdamW without weight decay, gradients clipped to norm 1.0,
a linear schedule with optional warm-up. Every head-training loop is one :class:`HeadTraining`: the fast path
steps it through epochs, ``search`` and ``tune`` step it between evaluation points
(:class:`st_pooling.training.batches.BatchStream` gives them the same batch order).

Under several processes (:class:`~st_pooling.training.distributed.Ranks`) the loop is data-parallel over the same
global batch: each rank embeds its share of every batch's rows, the embeddings are gathered with their gradients and
every rank computes the whole batch's loss, then the head's gradients are averaged in one all-reduce, so every rank
takes the single process's step (up to float reduction order) and holds the same weights. Dev embeddings are split
the same way.
"""

from __future__ import annotations

import copy
import math
from abc import ABC, abstractmethod
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch
from scipy.stats import spearmanr
from sentence_transformers import SentenceTransformer
from torch import Tensor, nn
from tqdm.auto import tqdm

from st_pooling.modules.base import PoolingModule
from st_pooling.training.batches import epoch_batches
from st_pooling.training.data import PairData, ScoredPairData, TrainingData
from st_pooling.training.distributed import Ranks
from st_pooling.training.features import FeatureCache


@dataclass
class EpochRecord:
    """One epoch: mean training loss, dev score (higher is better) and its name, wall seconds of the training steps
    (dev evaluation and checkpoint saving excluded)."""

    epoch: int
    train_loss: float
    dev_score: float | None
    dev_metric: str | None
    seconds: float
    step_losses: list[float] = field(default_factory=list)


@dataclass
class FastPathResult:
    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int | None = None
    best_dev_score: float | None = None
    stopped_early: bool = False


def pooling_position(model: SentenceTransformer) -> int:
    """Index of the pooling head in ``model``'s modules."""
    for position, module in enumerate(model):
        if isinstance(module, PoolingModule):
            return position
    raise ValueError("the model has no st-pooling pooling module; build it with st_pooling.build_model")


class Embedder(ABC):
    """How a head-training step embeds its texts: :class:`CachedHeadEmbedder` (the head on cached features) or
    :class:`LiveEmbedder` (the whole model). ``head`` is the pooling head being trained."""

    head: PoolingModule

    @abstractmethod
    def __call__(self, texts: Sequence[str]) -> Tensor:
        """(batch, dim) embeddings, with gradients when they are enabled."""

    @abstractmethod
    def base_parameters(self) -> list[nn.Parameter]:
        """The base's parameters a step trains (none when its output is cached)."""

    @abstractmethod
    def train(self) -> None:
        """Training mode for what a step trains."""

    @abstractmethod
    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Embeddings in eval mode, without gradients."""

    def head_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.head.parameters() if p.requires_grad]


class CachedHeadEmbedder(Embedder):
    """Embeds texts from a :class:`FeatureCache` with ``model``'s head and the modules after it (Normalize).

    With several ``ranks`` every rank is called with the same texts, embeds its share and returns all of them
    (gathered with their gradients)."""

    def __init__(self, model: SentenceTransformer, cache: FeatureCache, ranks: Ranks | None = None) -> None:
        position = pooling_position(model)
        self.head = cast(PoolingModule, model[position])  # pooling_position found a PoolingModule there
        self.after = [model[i] for i in range(position + 1, len(model))]
        cache.check_fits(self.head)
        self.cache = cache
        self.ranks = ranks or Ranks()
        self.device = next(iter(self.head.parameters()), torch.empty(0)).device

    def __call__(self, texts: Sequence[str]) -> Tensor:
        if not self.ranks.distributed:
            return self._embed(texts)
        share = list(texts[self.ranks.share(len(texts))])
        local = self._embed(share) if share else \
            torch.zeros((0, self.head.get_embedding_dimension()), device=self.device)
        return self.ranks.gather_rows(local, with_grad=torch.is_grad_enabled(),
                                      counts=self.ranks.share_counts(len(texts)))  # (batch, dim), every rank's rows

    def _embed(self, texts: Sequence[str]) -> Tensor:
        features = {"sentence_embedding": self.cache.pool(self.head, texts, self.device)}  # (batch, dim)
        for module in self.after:
            features = module(features)
        return features["sentence_embedding"]

    def base_parameters(self) -> list[nn.Parameter]:
        """None: the base's output is cached, a step cannot change it."""
        return []

    def train(self) -> None:
        self.head.train()

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        was_training = self.head.training
        self.head.eval()
        try:
            parts = [self(texts[i:i + batch_size]).float().cpu().numpy() for i in range(0, len(texts), batch_size)]
        finally:
            self.head.train(was_training)
        return np.concatenate(parts) if parts else np.empty((0, self.head.get_embedding_dimension()), np.float32)


class LiveEmbedder(Embedder):
    """Embeds texts with the whole ``model``, the base's forward pass included, with gradients when they are enabled:
    the embedder of a training step that adapts the base as well as the head (LoRA adapters in ``search`` and
    ``tune``). One process; the same interface as :class:`CachedHeadEmbedder`."""

    def __init__(self, model: SentenceTransformer) -> None:
        self.model = model
        self.head = cast(PoolingModule, model[pooling_position(model)])
        self.device = model.device

    def __call__(self, texts: Sequence[str]) -> Tensor:
        features = self.model.preprocess(list(texts))
        features = {k: v.to(self.device) if isinstance(v, Tensor) else v for k, v in features.items()}
        return self.model(features)["sentence_embedding"]  # (batch, dim)

    def base_parameters(self) -> list[nn.Parameter]:
        """The base's parameters that require a gradient (its LoRA adapters)."""
        return [p for module in list(self.model)[:pooling_position(self.model)] for p in module.parameters()
                if p.requires_grad]

    def train(self) -> None:
        self.model.train()

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Embeddings in eval mode, without gradients (sentence-transformers' own ``encode``)."""
        if not len(texts):
            return np.empty((0, self.head.get_embedding_dimension()), np.float32)
        was_training = self.model.training
        try:
            return self.model.encode(list(texts), batch_size=batch_size, convert_to_numpy=True,
                                     show_progress_bar=False).astype(np.float32)
        finally:
            self.model.train(was_training)


def _columns(data: TrainingData) -> list[list[str]]:
    return list(data.columns().values())


def _labels(data: TrainingData, rows: Sequence[int]) -> Tensor | None:
    if isinstance(data, ScoredPairData):
        return torch.tensor([data.scores[i] for i in rows], dtype=torch.float32)
    return None


def batch_loss(loss: nn.Module, embed: Callable[[Sequence[str]], Tensor], data: TrainingData,
               rows: Sequence[int]) -> Tensor:
    """The loss of one batch ``rows`` of ``data``: every column embedded, then the ST loss's own math."""
    embeddings = [embed([column[i] for i in rows]) for column in _columns(data)]
    labels = _labels(data, rows)
    if labels is not None:
        labels = labels.to(embeddings[0].device)
    # every make_loss loss (a sentence-transformers loss) has it; the nn.Module the losses are typed as does not
    compute: Callable[[list[Tensor], Tensor | None], Tensor] = getattr(loss, "compute_loss_from_embeddings")
    return compute(embeddings, labels)


def cosine_spearman(emb1: np.ndarray, emb2: np.ndarray, scores: Sequence[float]) -> float:
    """Spearman correlation between the pairs' cosine similarities and their gold scores (ST's spearman_cosine)."""
    a = emb1 / np.maximum(np.linalg.norm(emb1, axis=1, keepdims=True), 1e-12)
    b = emb2 / np.maximum(np.linalg.norm(emb2, axis=1, keepdims=True), 1e-12)
    return float(spearmanr((a * b).sum(axis=1), scores).statistic)


def dev_score(embedder: Embedder, loss: nn.Module, dev: TrainingData, batch_size: int,
              seed: int = 0) -> tuple[float, str]:
    """Scored dev pairs: cosine Spearman (higher is better). Other dev data: minus the mean dev loss over the batches
    the trainer's evaluation takes (its batch sampler at epoch 0, every batch), so both paths report the same value."""
    if isinstance(dev, ScoredPairData):
        return cosine_spearman(embedder.encode(dev.texts1), embedder.encode(dev.texts2), dev.scores), \
            "spearman_cosine"
    with torch.no_grad():
        losses = [float(batch_loss(loss, embedder, dev, rows))
                  for rows in epoch_batches(dev, batch_size, seed, 0, every_batch=True)]
    return -float(np.mean(losses)), "neg_loss"


def head_optimizer(parameters: Sequence[nn.Parameter] | Sequence[dict[str, Any]], learning_rate: float,
                   weight_decay: float = 0.0) -> torch.optim.AdamW:
    """Fused AdamW: the HF Trainer's default optimizer (adamw_torch_fused), and the fastest AdamW step. ``parameters``:
    tensors, or torch's parameter groups (each with its own ``lr``)."""
    return torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=weight_decay, fused=True)


def optimizer_step(value: Tensor, parameters: Sequence[nn.Parameter], optimizer: torch.optim.Optimizer,
                   scheduler: torch.optim.lr_scheduler.LRScheduler, max_grad_norm: float | None = 1.0,
                   ranks: Ranks | None = None) -> None:
    """One step as the HF Trainer takes it: backward, gradient norm clipped to ``max_grad_norm`` (its default 1.0),
    optimizer step, schedule step. With several ``ranks`` the gradients are averaged over them before clipping."""
    optimizer.zero_grad(set_to_none=True)
    value.backward()
    if ranks is not None:
        ranks.average_gradients(parameters)
    if max_grad_norm is not None:
        nn.utils.clip_grad_norm_(parameters, max_grad_norm)
    optimizer.step()
    scheduler.step()


def linear_schedule(optimizer: torch.optim.Optimizer, total_steps: int,
                    warmup_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class HeadTraining:
    """A pooling head in training, one optimizer step at a time: the one head-training loop. On cached features
    (:class:`CachedHeadEmbedder`) it trains the head alone; live (:class:`LiveEmbedder`) it also trains whatever the
    base has that requires a gradient (LoRA adapters).

    ``train --fast-path`` (:func:`train_head_on_cache`, epochs), ``search`` (a candidate's run, paused and resumed
    between evaluation points) and ``tune`` (a source of the mixture per step) all step through it, so they share
    the optimizer (fused AdamW, the HF Trainer's default), the clipping (norm ``max_grad_norm``, its default 1.0), the
    linear schedule over ``total_steps`` (with ``warmup_steps``), the data-parallel step over ``ranks`` and the check
    that the loss stayed finite. Which rows a step sees is the caller's: :func:`epoch_batches` or a
    :class:`~st_pooling.training.batches.BatchStream` over it. :meth:`state_dict` / :meth:`load_state_dict` carry
    the head, optimizer, schedule and step count (tensors and numbers only: a checkpoint loads with
    ``torch.load(..., weights_only=True)``).
    """

    def __init__(self, embedder: Embedder, *, learning_rate: float, total_steps: int,
                 warmup_steps: int = 0, weight_decay: float = 0.0, max_grad_norm: float | None = 1.0,
                 ranks: Ranks | None = None, name: str = "the head", base_learning_rate: float | None = None) -> None:
        """``learning_rate``: the head's; ``base_learning_rate``: the base's trainable parameters' (live only;
        default: the head's)."""
        self.embedder = embedder
        self.ranks = ranks or Ranks()
        head, base = embedder.head_parameters(), embedder.base_parameters()
        if not head:
            raise ValueError(f"{type(self.head).__name__} has no trainable parameters: there is nothing to train")
        self.parameters = head + base
        groups = [{"params": head, "lr": learning_rate}]
        if base:
            groups.append({"params": base, "lr": base_learning_rate or learning_rate})
        self.optimizer = head_optimizer(groups, learning_rate, weight_decay)
        self.scheduler = linear_schedule(self.optimizer, total_steps, warmup_steps)
        self.max_grad_norm, self.name = max_grad_norm, name
        self.step = 0

    @property
    def head(self) -> PoolingModule:
        return self.embedder.head

    def trained_weights(self) -> dict[str, Tensor]:
        """A copy of what training changes: the head's state and, when the base is adapted, its trainable tensors
        (``base.<name>``). :meth:`load_trained_weights` puts it back, in this run or in a model built the same way."""
        weights = {f"head.{k}": v.detach().clone() for k, v in self.head.state_dict().items()}
        if isinstance(self.embedder, LiveEmbedder):
            base = self.embedder.model[0]
            weights.update({f"base.{k}": v.detach().clone() for k, v in base.named_parameters() if v.requires_grad})
        return weights

    def load_trained_weights(self, weights: Mapping[str, Tensor]) -> None:
        load_trained_weights(self.embedder.model if isinstance(self.embedder, LiveEmbedder) else None, self.head,
                             weights)

    def train_step(self, loss: nn.Module, data: TrainingData, rows: Sequence[int], what: str = "loss") -> float:
        """One optimizer step on the batch ``rows`` of ``data`` with ``loss``; returns the batch's loss. A loss that is
        not finite stops training with an error that says what to change, before it reaches the weights."""
        self.embedder.train()
        value = batch_loss(loss, self.embedder, data, rows)
        if not math.isfinite(value.item()):
            raise FloatingPointError(f"{self.name}: the {what} became {value.item()} at step {self.step + 1}; "
                                     "lower the learning rate")
        optimizer_step(value, self.parameters, self.optimizer, self.scheduler, self.max_grad_norm, self.ranks)
        self.step += 1
        return value.item()

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "weights": self.trained_weights(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        # a checkpoint written before December 2026 holds the head's state alone, under "head"
        weights = state["weights"] if "weights" in state else {f"head.{k}": v for k, v in state["head"].items()}
        self.load_trained_weights(weights)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])


def load_trained_weights(model: SentenceTransformer | None, head: PoolingModule,
                         weights: Mapping[str, Tensor]) -> None:
    """Put :meth:`HeadTraining.trained_weights` into ``head`` and, for ``base.*`` entries, into ``model[0]``'s
    parameters of those names (a model with the same adapters); every name must be known."""
    head.load_state_dict({k[len("head."):]: v for k, v in weights.items() if k.startswith("head.")})
    base_weights = {k[len("base."):]: v for k, v in weights.items() if k.startswith("base.")}
    if not base_weights:
        return
    if model is None:
        raise ValueError("these weights adapt the base (LoRA): load them into a model with the same adapters")
    parameters = dict(model[0].named_parameters())
    unknown = sorted(set(base_weights) - set(parameters))
    if unknown:
        raise ValueError(f"the model has no parameters {unknown[:3]}: it was not built with the same adapters")
    with torch.no_grad():
        for name, value in base_weights.items():
            parameters[name].copy_(value)


def train_head_on_cache(model: SentenceTransformer, cache: FeatureCache, train: TrainingData, loss: nn.Module, *,
                        dev: TrainingData | None = None, epochs: int = 1, batch_size: int = 32,
                        learning_rate: float = 1e-3, weight_decay: float = 0.0, warmup_ratio: float = 0.0,
                        seed: int = 0, early_stopping_patience: int | None = None, max_steps: int | None = None,
                        max_grad_norm: float | None = 1.0, show_progress_bar: bool = True,
                        ranks: Ranks | None = None) -> FastPathResult:
    """Train ``model``'s pooling head on ``cache`` (which must hold every train and dev text) for ``epochs`` epochs
    of :class:`HeadTraining` steps, in the trainer's batch order.

    Evaluates on ``dev`` after each epoch, keeps the best epoch's head weights (restored at the end) and stops after
    ``early_stopping_patience`` epochs without improvement. ``max_steps`` caps the optimizer steps (benchmarks).
    ``max_grad_norm`` clips the head's gradient norm before each step, as the HF Trainer does (its default 1.0).
    ``ranks``: data-parallel over several processes (every rank calls this with the same arguments; see the module).
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    torch.manual_seed(seed)
    steps_per_epoch = len(epoch_batches(train, batch_size, seed, 0))
    total_steps = int(min(steps_per_epoch * epochs, max_steps or math.inf))
    training = HeadTraining(CachedHeadEmbedder(model, cache, ranks), learning_rate=learning_rate,
                            total_steps=total_steps, warmup_steps=int(warmup_ratio * total_steps),
                            weight_decay=weight_decay, max_grad_norm=max_grad_norm, ranks=ranks,
                            name=f"fast-path training of {type(model[pooling_position(model)]).__name__}")
    head, embedder = training.head, training.embedder
    result = FastPathResult()
    best_state, since_best = None, 0
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        losses = []
        for rows in tqdm(epoch_batches(train, batch_size, seed, epoch - 1), desc=f"epoch {epoch} (cached features)",
                         disable=not show_progress_bar or not training.ranks.is_main):
            if training.step >= total_steps:
                break
            losses.append(training.train_step(loss, train, rows))
        train_seconds = time.perf_counter() - started
        score, metric = dev_score(embedder, loss, dev, batch_size, seed) if dev is not None else (None, None)
        result.history.append(EpochRecord(epoch, float(np.mean(losses)) if losses else math.nan, score, metric,
                                          train_seconds, losses))
        if score is not None:
            if result.best_dev_score is None or score > result.best_dev_score:
                result.best_epoch, result.best_dev_score, since_best = epoch, score, 0
                best_state = copy.deepcopy(head.state_dict())
            else:
                since_best += 1
                if early_stopping_patience is not None and since_best >= early_stopping_patience:
                    result.stopped_early = True
                    break
        if training.step >= total_steps:
            break
    if best_state is not None:
        head.load_state_dict(best_state)
    head.eval()
    return result


__all__ = ["CachedHeadEmbedder", "EpochRecord", "FastPathResult", "HeadTraining", "LiveEmbedder", "PairData",
           "batch_loss", "cosine_spearman", "load_trained_weights", "train_head_on_cache"]
