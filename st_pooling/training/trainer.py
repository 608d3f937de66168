"""Train a pooling model: an API over ``SentenceTransformerTrainer`` plus the frozen-feature fast path.

Modes:

* ``"head"``: the base is frozen (no gradients, and its dropout off, so it computes exactly what it computes at
  inference); only the pooling head learns. Set ``fast_path=True`` to train on cached features instead of running the
  base every step (:mod:`st_pooling.training.fast_path`).
* ``"full"``: everything learns; the head at ``head_learning_rate`` (default 1e-3), the base at ``learning_rate``
  (default 2e-5), through the trainer's ``learning_rate_mapping``.
* ``"lora"``: LoRA adapters on the base (needs the optional extra ``pip install 'st-pooling[lora]'``) and the whole
  head learn; the base's own weights stay frozen.

Every mode evaluates on the dev set after each epoch when one is given, keeps the best epoch and can stop early. The
model is trained in a temporary folder beside ``output_dir`` and renamed into place only when everything succeeded,
so a failed run leaves nothing half-written there. The saved folder loads with ``SentenceTransformer(path)`` once
``st_pooling`` is imported.

Under ``torchrun`` / ``accelerate launch`` (several processes, :mod:`st_pooling.training.distributed`) every mode is
data-parallel over the same global batch (``batch_size`` rows per step in all, each rank embedding its share; the loss
is the whole batch's loss, so the steps are the single process's up to float reduction order): the trainer path with
the trainer's own distributed mode (DDP, gloo on CPU), the fast path with gradients averaged in one all-reduce. One
work folder is shared by all ranks, the main process alone writes and renames the output, and every rank ends with
the main process's weights (the best epoch restored everywhere).
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Transformer
from torch import nn

from st_pooling.atomic import owned_output, replace_folder
from st_pooling.modules.base import PoolingModule
from st_pooling.publish.card import write_model_card
from st_pooling.training.batches import batch_sampler_kind
from st_pooling.training.compat import check_lora_dependencies
from st_pooling.training.distributed import Ranks, current_ranks
from st_pooling.training.data import PairData, ScoredPairData, TrainingData
from st_pooling.training.fast_path import EpochRecord, pooling_position, train_head_on_cache
from st_pooling.training.features import DEFAULT_MAX_BYTES, build_feature_cache
from st_pooling.training.losses import make_loss

logger = logging.getLogger(__name__)

MODES = ("head", "full", "lora")
DEFAULT_LEARNING_RATES = {"head": 1e-3, "full": 2e-5, "lora": 1e-4}
DEFAULT_HEAD_LEARNING_RATE = 1e-3


@dataclass
class TrainConfig:
    """How to train. ``learning_rate`` defaults by mode: head 1e-3, full 2e-5, lora 1e-4."""

    mode: str = "head"
    loss: str | None = None  # 'mnrl' | 'cosent' | 'angle'; default: mnrl for pairs/triplets, cosent for scored pairs
    epochs: int = 1
    batch_size: int = 32
    learning_rate: float | None = None
    head_learning_rate: float = DEFAULT_HEAD_LEARNING_RATE  # full / lora modes: the head's own rate
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    seed: int = 0
    early_stopping_patience: int | None = None
    fast_path: bool = False  # head mode only: train on cached features
    cache_dtype: str = "float16"  # fast path storage: float16 or float32 (exact)
    cache_max_bytes: int = DEFAULT_MAX_BYTES
    max_steps: int | None = None  # cap on optimizer steps (benchmarks, smoke tests)
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    show_progress_bar: bool = True
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.fast_path and self.mode != "head":
            raise ValueError(f"the frozen-feature fast path needs a frozen base (mode='head'), not mode={self.mode!r}")
        if self.mode == "lora":
            check_lora_dependencies()  # before any data or model is touched: a pair that cannot train is refused now
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must lie in [0, 1), got {self.warmup_ratio}")
        if self.epochs < 1 or self.batch_size < 2:
            raise ValueError(f"need epochs >= 1 and batch_size >= 2, got {self.epochs} and {self.batch_size}")

    @property
    def base_learning_rate(self) -> float:
        return self.learning_rate if self.learning_rate is not None else DEFAULT_LEARNING_RATES[self.mode]


@dataclass
class TrainResult:
    """What a training run produced: the model (best epoch restored), where it was saved, per-epoch history."""

    model: SentenceTransformer
    output_dir: Path | None
    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int | None = None
    best_dev_score: float | None = None
    dev_metric: str | None = None
    seconds: float = 0.0
    cache_seconds: float | None = None


# ----------------------------------------------------------------------------- output folder hygiene


@contextmanager
def atomic_output_dir(target: str | Path | None, overwrite: bool = False,
                      ranks: Ranks | None = None) -> Iterator[Path]:
    """A fresh temporary folder beside ``target``; renamed to ``target`` on success, removed on failure. The whole run
    holds ``target`` (:func:`~st_pooling.atomic.owned_output`): a second run into it is refused, naming this one.

    Under several processes (``ranks``) the main process alone holds ``target``, makes the folder and renames it; every
    rank works in that one folder (the trainer's checkpoints must be readable by every rank to restore the best epoch),
    and the main process renames only after every rank has finished with it."""
    ranks = ranks or Ranks()
    with ExitStack() as stack:

        def make_scratch() -> str:
            if target is None:
                return stack.enter_context(tempfile.TemporaryDirectory(prefix="st-pooling-train-"))
            owned = stack.enter_context(owned_output(target, "train", overwrite=overwrite, replaced_whole=True))
            scratch = Path(tempfile.mkdtemp(prefix=f".{owned.name}.partial-", dir=owned.parent))
            stack.callback(shutil.rmtree, scratch, ignore_errors=True)
            return str(scratch)

        scratch = Path(ranks.on_main(make_scratch))
        yield scratch
        ranks.barrier()  # every rank is done with the shared folder (and has saved what it had to)
        if ranks.is_main and target is not None:
            final = scratch / "model"
            if not final.is_dir():
                raise RuntimeError("training finished without saving a model")
            replace_folder(final, Path(target).expanduser().resolve())
    ranks.barrier()  # no rank returns before the output is in place


# ----------------------------------------------------------------------------- modes


def freeze_module(module: nn.Module) -> None:
    """No gradients and no dropout: a frozen module computes exactly what it computes at inference."""
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    for child in module.modules():
        if isinstance(child, nn.Dropout):
            child.p = 0.0


def prepare_mode(model: SentenceTransformer, config: TrainConfig) -> None:
    """Freeze or adapt the modules before the pooling head as ``config.mode`` asks."""
    position = pooling_position(model)
    base_modules = [model[i] for i in range(position)]
    if config.mode == "head":
        for module in base_modules:
            freeze_module(module)
        if not any(p.requires_grad for p in model[position].parameters()):
            raise ValueError(f"{type(model[position]).__name__} has no trainable parameters: head-only training has "
                             "nothing to train (use mode='full' or 'lora' to adapt the base)")
    elif config.mode == "lora":
        add_lora(model, config)


def add_lora(model: SentenceTransformer, config: TrainConfig) -> None:
    """LoRA adapters on every attention and MLP projection of the base (the study's setting: all linear layers)."""
    from peft import LoraConfig, TaskType  # TrainConfig(mode="lora") has checked that a compatible peft is installed

    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules="all-linear", task_type=TaskType.FEATURE_EXTRACTION)
    model.add_adapter(lora)


# ----------------------------------------------------------------------------- the trainer path


def _evaluator_and_metric(dev: TrainingData | None) -> tuple[Any, Any, str | None, bool | None]:
    """(evaluator, eval dataset, metric_for_best_model, greater_is_better) for a dev set."""
    if dev is None:
        return None, None, None, None
    if isinstance(dev, ScoredPairData):
        from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator

        evaluator = EmbeddingSimilarityEvaluator(dev.texts1, dev.texts2, dev.scores, main_similarity="cosine",
                                                 similarity_fn_names=["cosine"], name="dev", write_csv=False)
        return evaluator, None, "eval_dev_spearman_cosine", True
    return None, dev.to_dataset(), "eval_loss", False


def _history_from_logs(log_history: list[dict[str, Any]], metric: str | None, greater: bool | None,
                       epoch_seconds: list[float]) -> list[EpochRecord]:
    """One record per epoch from the HF log history (train loss logged every step, eval metrics per epoch)."""
    records: dict[int, dict[str, Any]] = {}
    for entry in log_history:
        epoch = math.ceil(entry.get("epoch", 0) - 1e-9)  # a step's fractional epoch belongs to the epoch it ends in
        if epoch < 1:
            continue
        record = records.setdefault(epoch, {"losses": []})
        if "loss" in entry:
            record["losses"].append(entry["loss"])
        if metric and metric in entry:
            record["dev"] = entry[metric]
    name = None if metric is None else metric.removeprefix("eval_")
    history = []
    for epoch in sorted(records):
        dev = records[epoch].get("dev")
        if dev is not None and greater is False:
            dev, name = -dev, "neg_loss"
        seconds = epoch_seconds[epoch - 1] if epoch - 1 < len(epoch_seconds) else float("nan")
        losses = records[epoch]["losses"]
        history.append(EpochRecord(epoch, float(np.mean(losses)) if losses else float("nan"), dev, name, seconds,
                                   losses))
    return history


def _epoch_timer() -> Any:
    from transformers import TrainerCallback

    class EpochTimer(TrainerCallback):
        """Wall seconds of each epoch's training steps (evaluation and saving excluded)."""

        def __init__(self) -> None:
            self.seconds: list[float] = []
            self._started = 0.0

        def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._started = time.perf_counter()

        def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.seconds.append(time.perf_counter() - self._started)

    return EpochTimer()


class GlobalBatchLoss(nn.Module):
    """A sentence-transformers loss taken over the whole global batch on every rank of a data-parallel run.

    Each rank embeds its share of the batch; the embeddings are gathered with their gradients and the wrapped loss's
    own ``compute_loss_from_embeddings`` scores the whole batch, so in-batch negatives (MNRL) and pairwise terms
    (CoSENT, AnglE) span every rank's rows, as in one process. Every rank's loss is that one value, and the gather's
    backward sums the W ranks' identical gradients onto each share, so DDP's average of the ranks' gradients is exactly
    the whole batch's gradient. (sentence-transformers' ``gather_across_devices`` does this for MNRL alone.)
    """

    def __init__(self, loss: nn.Module, ranks: Ranks) -> None:
        super().__init__()
        self.loss, self.ranks = loss, ranks

    @property
    def model(self) -> Any:
        # the trainer looks for `model` to put its DDP-wrapped model in, and finds it in `self.loss`
        return self.loss.model

    def forward(self, features: list[dict[str, Any]], labels: torch.Tensor | None) -> torch.Tensor:
        model = self.model  # the trainer's (DDP-wrapped) model, as the wrapped loss would call it
        embeddings = [self.ranks.gather_rows(model(feature)["sentence_embedding"], with_grad=True)
                      for feature in features]
        if labels is not None:
            labels = self.ranks.gather_rows(labels)
        compute = getattr(self.loss, "compute_loss_from_embeddings")  # every make_loss loss has it
        return compute(embeddings, labels)


def train_with_trainer(model: SentenceTransformer, train: TrainingData, workdir: Path, dev: TrainingData | None,
                       config: TrainConfig, ranks: Ranks | None = None) -> TrainResult:
    """Train through ``SentenceTransformerTrainer`` with checkpoints in ``workdir`` (the model is updated in place).

    Under several processes (``ranks``) the trainer runs in its distributed mode (DDP; gloo on CPU): each global batch
    of ``config.batch_size`` rows is split across the ranks (accelerate's ``split_batches``), the loss is the whole
    batch's (:class:`GlobalBatchLoss`), and the last incomplete batch of an epoch is left out (a rank with no rows
    would stall the others)."""
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from transformers import EarlyStoppingCallback, PrinterCallback

    ranks = ranks or Ranks()
    if config.batch_size % ranks.world:
        raise ValueError(f"batch_size {config.batch_size} (the global batch) must be a multiple of the "
                         f"{ranks.world} processes, each of which takes an equal share of it")
    loss: nn.Module = make_loss(config.loss, model, train)
    if ranks.distributed:
        loss = GlobalBatchLoss(loss, ranks)
    cpu = ranks.device.type == "cpu"
    evaluator, eval_dataset, metric, greater = _evaluator_and_metric(dev)
    position = pooling_position(model)
    learning_rate_mapping = {}
    if config.mode in ("full", "lora") and any(p.requires_grad for p in model[position].parameters()):
        # names as the loss's parameters: model.<i>.*, loss.model.<i>.* inside GlobalBatchLoss
        learning_rate_mapping = {rf"^(loss\.)?model\.{position}\.": config.head_learning_rate}
    args = SentenceTransformerTrainingArguments(
        output_dir=str(workdir / "checkpoints"),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        learning_rate=config.base_learning_rate,
        learning_rate_mapping=learning_rate_mapping,
        warmup_steps=config.warmup_ratio,  # a float below 1 is a ratio of the total steps (transformers 5)
        weight_decay=config.weight_decay,
        seed=config.seed,
        data_seed=config.seed,
        eval_strategy="epoch" if dev is not None else "no",
        save_strategy="epoch" if dev is not None else "no",
        logging_strategy="steps",
        logging_steps=1,  # every step's loss, comparable step by step with the fast path
        load_best_model_at_end=dev is not None,
        metric_for_best_model=metric,
        greater_is_better=greater,
        save_total_limit=2 if dev is not None else None,
        batch_sampler=batch_sampler_kind(train),
        report_to="none",
        disable_tqdm=not config.show_progress_bar,
        dataloader_num_workers=0,
        use_cpu=cpu and ranks.distributed,  # on CPU, transformers turns its distributed mode on only when told
        ddp_backend="gloo" if cpu and ranks.distributed else None,
        accelerator_config={"split_batches": ranks.distributed},
        dataloader_drop_last=ranks.distributed,
    )
    timer = _epoch_timer()
    callbacks = [timer]
    if config.early_stopping_patience is not None and dev is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.early_stopping_patience))
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train.to_dataset(),
                                         eval_dataset=eval_dataset, loss=loss, evaluator=evaluator,
                                         callbacks=callbacks)
    trainer.remove_callback(PrinterCallback)  # it would print every step's log line; the history reports them
    trainer.train()
    ranks.broadcast_module(model)  # the main process's best epoch on every rank, even where its checkpoint is unreadable
    history = _history_from_logs(trainer.state.log_history, metric, greater, timer.seconds)
    scored = [r for r in history if r.dev_score is not None]
    best = max(scored, key=lambda r: r.dev_score or 0.0, default=None)  # `or 0.0`: never taken, dev_score is set
    return TrainResult(model, None, history, best.epoch if best else None, best.dev_score if best else None,
                       best.dev_metric if best else None)


# ----------------------------------------------------------------------------- the fast path


def train_with_fast_path(model: SentenceTransformer, train: TrainingData, dev: TrainingData | None,
                         config: TrainConfig, ranks: Ranks | None = None) -> TrainResult:
    """Head-only training on cached features of the frozen base (the head in ``model`` is updated in place); under
    several processes (``ranks``) the cache is built once across them and the steps are data-parallel."""
    position = pooling_position(model)
    if position != 1:
        raise ValueError("the fast path caches the output of one Transformer module feeding the pooling head; this "
                         f"model has {position} modules before it: train it with fast_path=False")
    texts = train.texts() + (dev.texts() if dev is not None else [])
    started = time.perf_counter()
    # position 1: model[0] is the Transformer feeding the head, model[1] the PoolingModule pooling_position found
    transformer, head = cast(Transformer, model[0]), cast(PoolingModule, model[1])
    cache = build_feature_cache(transformer, head, texts, dtype=config.cache_dtype,
                                max_bytes=config.cache_max_bytes, show_progress_bar=config.show_progress_bar,
                                ranks=ranks)
    cache_seconds = time.perf_counter() - started
    loss = make_loss(config.loss, model, train)
    outcome = train_head_on_cache(model, cache, train, loss, dev=dev, epochs=config.epochs,
                                  batch_size=config.batch_size, learning_rate=config.base_learning_rate,
                                  weight_decay=config.weight_decay, warmup_ratio=config.warmup_ratio,
                                  seed=config.seed, early_stopping_patience=config.early_stopping_patience,
                                  max_steps=config.max_steps, show_progress_bar=config.show_progress_bar,
                                  ranks=ranks)
    metric = next((r.dev_metric for r in outcome.history if r.dev_metric), None)
    return TrainResult(model, None, outcome.history, outcome.best_epoch, outcome.best_dev_score, metric,
                       cache_seconds=cache_seconds)


# ----------------------------------------------------------------------------- the public API


def train_model(model: SentenceTransformer, train: TrainingData, output_dir: str | Path | None = None, *,
                dev: TrainingData | None = None, config: TrainConfig | None = None) -> TrainResult:
    """Train ``model`` (Transformer + st-pooling head [+ Normalize]) on ``train`` and save it to ``output_dir``.

    Args:
        model: e.g. ``st_pooling.build_model("minilm", "latent_attention")``; trained in place.
        train: :class:`PairData` (MultipleNegativesRankingLoss) or :class:`ScoredPairData` (CoSENT / AnglE).
        output_dir: where the trained model goes (None: not saved). Must not exist or be empty unless
            ``config.overwrite``; written only when training succeeded.
        dev: evaluated after each epoch: scored pairs by cosine Spearman, other data by the dev loss; the best epoch
            is kept and early stopping watches it.
        config: :class:`TrainConfig` (mode, loss, epochs, learning rates, seed, fast path, ...).
    """
    config = config or TrainConfig()
    torch.manual_seed(config.seed)
    started = time.perf_counter()
    ranks = current_ranks()  # several processes under torchrun / accelerate launch, else this one
    if ranks.distributed:
        model.to(ranks.device)  # this rank's own device (cuda:LOCAL_RANK under NCCL)
    with atomic_output_dir(output_dir, overwrite=config.overwrite, ranks=ranks) as workdir:
        prepare_mode(model, config)
        if config.fast_path:
            result = train_with_fast_path(model, train, dev, config, ranks)
        else:
            result = train_with_trainer(model, train, workdir, dev, config, ranks)
        if output_dir is not None and ranks.is_main:
            model.save(str(workdir / "model"))
            _write_training_summary(workdir / "model", train, dev, config, result)
            write_model_card(workdir / "model", model)  # Hub-ready card: st-pooling, the pooling, data, loss, curve
    result.output_dir = None if output_dir is None else Path(output_dir).expanduser().resolve()
    result.seconds = time.perf_counter() - started
    return result


def _write_training_summary(folder: Path, train: TrainingData, dev: TrainingData | None, config: TrainConfig,
                            result: TrainResult) -> None:
    import json

    summary = {"train": {"source": train.source, "kind": train.kind, "rows": len(train)},
               "dev": None if dev is None else {"source": dev.source, "kind": dev.kind, "rows": len(dev)},
               "config": asdict(config), "best_epoch": result.best_epoch, "best_dev_score": result.best_dev_score,
               "dev_metric": result.dev_metric, "history": [asdict(r) for r in result.history]}
    (folder / "st_pooling_training.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")


def train_pooling(base: str, pooling: str, train: TrainingData, output_dir: str | Path | None = None, *,
                  dev: TrainingData | None = None, config: TrainConfig | None = None,
                  **build_options: Any) -> TrainResult:
    """Build ``st_pooling.build_model(base, pooling, **build_options)`` and train it (see :func:`train_model`).

    A learnable head starts natively by default: as exactly the base's own pooling
    (``native=st_pooling.models.native_pooling_of(base)``, see :class:`~st_pooling.modules.base.PoolingModule`), so
    training starts from what the base was trained with. Pass ``native=None`` for the head's own initialisation
    (random latents, GeM at p = 3, ...), or ``native="cls"`` (any parameter-free last-layer pooling) to choose.
    """
    from st_pooling.models import build_model, with_native_start

    torch.manual_seed((config or TrainConfig()).seed)  # a head's random initialisation follows the seed too
    model = build_model(base, pooling, **with_native_start(base, pooling, build_options))
    return train_model(model, train, output_dir, dev=dev, config=config)
