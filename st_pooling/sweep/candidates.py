"""Training search candidates on the frozen-feature fast path, a few steps at a time, with checkpoints.

:class:`SearchTrainer` holds what every candidate shares: the training and dev data, the frozen base (loaded once
per kind of transformer output) and the feature caches (built once per cache kind: the last layer's token states for
token-level heads, and every layer's summary for MLTP, sliced to a candidate's layer subset). Heads start natively
by default: as exactly the base's own pooling (the space's ``native_start``, see
:func:`st_pooling.models.with_native_start`; a candidate option ``native`` overrides it, ``native: null`` gives the
head's own initialisation). :class:`CandidateRun`
trains one candidate's head step by step and records its dev score at the space's evaluation points, so a strategy
can pause, resume or stop it between points. Its steps are the fast path's
(:class:`~st_pooling.training.fast_path.HeadTraining`: same optimizer, clipping, schedule and batch order as
``train --fast-path``); only where it pauses and what it records are here.
"""

from __future__ import annotations

import io
import json
import math
import time
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Normalize, Transformer

from st_pooling.atomic import replace_folder
from st_pooling.models import build_transformer, pooling_for, with_native_start
from st_pooling.modules.base import BaseNeeds, PoolingModule
from st_pooling.modules.registry import pooling_class
from st_pooling.publish.card import write_model_card
from st_pooling.sweep.space import Candidate, SearchSpace, SearchSpaceError
from st_pooling.sweep.state import write_bytes_atomically
from st_pooling.training.batches import BatchStream
from st_pooling.training.data import TrainingData, load_training_data
from st_pooling.training.distributed import Ranks
from st_pooling.training.fast_path import CachedHeadEmbedder, Embedder, HeadTraining, LiveEmbedder, dev_score
from st_pooling.training.features import LAYER_STACK, FeatureCache, build_feature_cache, cache_kind
from st_pooling.training.losses import make_loss


class SearchTrainer:
    """The data, frozen base and feature caches shared by all candidates of one search space."""

    def __init__(self, space: SearchSpace, *, device: str | None = None, cache_dtype: str = "float16",
                 show_progress_bar: bool = False, ranks: Ranks | None = None,
                 data: tuple[TrainingData, TrainingData | None] | None = None) -> None:
        """``data``: (training data, dev data) given by the caller instead of read from the space's ``train`` /
        ``dev`` (tune's mixture trainer, which trains and judges on data of its own)."""
        self.space = space
        self.ranks = ranks or Ranks()  # several processes: each feature cache is built across them, once
        self.device = device or (str(self.ranks.device) if self.ranks.distributed else
                                 "cuda" if torch.cuda.is_available() else "cpu")
        self.cache_dtype = cache_dtype
        self.show_progress_bar = show_progress_bar
        if data is None:
            data = (load_training_data(space.train, data_dir=space.data_dir),
                    load_training_data(space.dev, data_dir=space.data_dir, split="dev"))
            if space.max_train:
                data = (data[0].subset(space.max_train, seed=space.seed), data[1])
            if space.max_dev and data[1] is not None:
                data = (data[0], data[1].subset(space.max_dev, seed=space.seed))
        self.train_data: TrainingData = data[0]
        self.dev_data: TrainingData | None = data[1]
        self._transformers: dict[BaseNeeds, Transformer] = {}
        self._caches: dict[str, FeatureCache] = {}
        self.cache_seconds = 0.0

    @property
    def texts(self) -> list[str]:
        dev_texts = self.dev_data.texts() if self.dev_data is not None else []
        return list(dict.fromkeys(self.train_data.texts() + dev_texts))

    def head_options(self, candidate: Candidate) -> dict[str, Any]:
        """``candidate``'s pooling options, with the base's own pooling as its native start unless it sets one or
        the space's ``native_start`` is off."""
        start = self.space.native_start
        if start is False:
            return dict(candidate.options)
        return with_native_start(self.space.base, candidate.pooling, candidate.options,
                                 native=None if start is True else start)

    def transformer_for(self, candidate: Candidate) -> Transformer:
        """The frozen base with the outputs ``candidate`` needs (loaded once per kind)."""
        needs = pooling_class(candidate.pooling).base_needs_for(self.head_options(candidate))
        if needs not in self._transformers:
            transformer = build_transformer(self.space.base, needs, max_seq_length=self.space.max_seq_length)
            for parameter in transformer.parameters():
                parameter.requires_grad_(False)
            self._transformers[needs] = transformer.eval()
        return self._transformers[needs]

    def build_head(self, candidate: Candidate) -> PoolingModule:
        """``candidate``'s untrained head, initialised from its seed (without touching the global RNG)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(candidate.seed)
            try:
                return pooling_for(self.transformer_for(candidate), candidate.pooling, **self.head_options(candidate))
            except ValueError as error:
                raise SearchSpaceError(f"candidate {candidate.id} {candidate.label}: {error}") from None

    def prepare(self) -> float:
        """Build every candidate's head once (a bad option fails before any compute is spent) and every feature cache
        the space needs (none when the base is adapted: every step runs it); returns the seconds spent caching."""
        heads = [(candidate, self.build_head(candidate)) for candidate in self.space.candidates]
        if not self.adapts_base:
            for candidate, head in heads:
                self.cache_for(head, self.transformer_for(candidate))
        return self.cache_seconds

    def embedder_for(self, model: SentenceTransformer) -> Embedder:
        """How ``model`` (from :meth:`build_model`) embeds training and dev texts: its head on the shared feature
        cache, or live through its adapted base."""
        if self.adapts_base:
            return LiveEmbedder(model)
        return CachedHeadEmbedder(model, self.cache_for(model[1], model[0]))

    @property
    def adapts_base(self) -> bool:
        """Whether candidates train LoRA adapters of the base (the space's ``lora_rank``) instead of a head alone."""
        return self.space.lora_rank is not None

    def build_model(self, candidate: Candidate) -> SentenceTransformer:
        """A ready SentenceTransformer [base, candidate's head, Normalize]. The frozen base is shared; a space with
        ``lora_rank`` gives each model a base of its own with fresh LoRA adapters (seeded by the candidate)."""
        head = self.build_head(candidate)
        if not self.adapts_base:
            return SentenceTransformer(modules=[self.transformer_for(candidate), head, Normalize()], device=self.device)
        from st_pooling.training.trainer import TrainConfig, add_lora

        needs = pooling_class(candidate.pooling).base_needs_for(self.head_options(candidate))
        transformer = build_transformer(self.space.base, needs, max_seq_length=self.space.max_seq_length)
        model = SentenceTransformer(modules=[transformer, head, Normalize()], device=self.device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(candidate.seed)
            add_lora(model, TrainConfig(mode="lora", lora_r=self.space.lora_rank, show_progress_bar=False))
        return model

    def cache_for(self, head: PoolingModule, transformer: Transformer) -> FeatureCache:
        """The feature cache ``head`` reads: built once per kind and shared; MLTP layer subsets are slices of one
        cache over every layer."""
        kind, options = cache_kind(head)
        if kind != LAYER_STACK:
            return self._cache("token_states", lambda: build_feature_cache(
                transformer, head, self.texts, dtype=self.cache_dtype, device=self.device,
                show_progress_bar=self.show_progress_bar, ranks=self.ranks))
        every_layer = list(range(1, head.num_layers + 1))
        summaries = {key: options[key] for key in ("layer_summary", "exclude_first_token", "native")}

        def build_every_layer() -> FeatureCache:
            with torch.random.fork_rng(devices=[]):
                full_head = type(head)(head.embedding_dimension, head.num_layers, num_latents=1, **summaries)
            return build_feature_cache(transformer, full_head, self.texts, dtype=self.cache_dtype, device=self.device,
                                       show_progress_bar=self.show_progress_bar, ranks=self.ranks)

        full = self._cache(f"layer_stack:{json.dumps(summaries, sort_keys=True)}", build_every_layer)
        if options["layers"] == every_layer:
            return full
        positions = [every_layer.index(layer) for layer in options["layers"]]
        if head.native is not None:
            positions.append(len(every_layer))  # the native row follows the layers
        return FeatureCache(full.kind, full.values[:, positions, :], None, full.index,
                            {**full.meta, "layers": list(options["layers"])})

    def _cache(self, key: str, build) -> FeatureCache:
        if key not in self._caches:
            started = time.perf_counter()
            self._caches[key] = build()
            self.cache_seconds += time.perf_counter() - started
        return self._caches[key]

    def start(self, candidate: Candidate) -> CandidateRun:
        """A fresh run of ``candidate`` at step 0 (not yet evaluated)."""
        return CandidateRun(self, candidate)


class CandidateRun:
    """One candidate's head in training: its optimizer, schedule, batch order and learning curve so far.

    The schedule decays linearly over the space's full ``steps``, whether or not the run gets there, so the curve
    of a run that is stopped early is exactly the start of the curve it would have had.
    """

    def __init__(self, trainer: SearchTrainer, candidate: Candidate) -> None:
        self.trainer, self.candidate, self.space = trainer, candidate, trainer.space
        self.model = trainer.build_model(candidate)
        self.training = HeadTraining(trainer.embedder_for(self.model), learning_rate=candidate.learning_rate,
                                     base_learning_rate=self.space.lora_learning_rate, total_steps=self.space.steps,
                                     name=f"{candidate.id} {candidate.label}")
        self.loss = make_loss(self.space.loss, self.model, trainer.train_data)
        self.batches = BatchStream(trainer.train_data, self.space.batch_size, candidate.seed)
        self.steps: list[int] = []
        self.scores: list[float] = []
        self.seconds = 0.0
        self.evaluations = 0
        self.eval_seconds = 0.0

    @property
    def head(self) -> PoolingModule:
        return self.training.head

    @property
    def embedder(self) -> Embedder:
        return self.training.embedder

    @property
    def step(self) -> int:
        """Optimizer steps taken so far."""
        return self.training.step

    def train_step(self) -> None:
        """One step on the next batch of the training data."""
        self.training.train_step(self.loss, self.trainer.train_data, self.batches.next())

    def train_to(self, step: int) -> None:
        """Train up to ``step`` without evaluating (what :meth:`next_point` does before it evaluates)."""
        while self.step < step:
            self.train_step()

    def evaluate(self) -> float:
        if self.trainer.dev_data is None:
            raise ValueError(f"{self.candidate.id}: no dev data to evaluate on (a trainer given data=(train, None) "
                             "evaluates its own way)")
        score, _ = dev_score(self.embedder, self.loss, self.trainer.dev_data, 256)
        self.head.eval()
        return float(score) if math.isfinite(score) else float("-inf")

    def next_point(self, to_step: int | None = None) -> tuple[int, float]:
        """Train up to ``to_step`` (default: the next step of the space's eval_every grid; step 0 of a run with no
        point yet: just evaluate) and record the dev score there. The evaluation is counted and timed apart from the
        training, because on a dev set of hundreds of pairs it costs as much as several training steps."""
        if to_step is None:
            to_step = min(self.step + self.space.eval_every, self.space.steps) if self.steps else 0
        if to_step > self.space.steps or to_step < self.step or (self.steps and to_step == self.step):
            raise ValueError(f"{self.candidate.id}: cannot record a point at step {to_step} after step {self.step} "
                             f"(a full run has {self.space.steps} steps)")
        started = time.perf_counter()
        self.train_to(to_step)
        evaluating = time.perf_counter()
        score = self.evaluate()
        self.eval_seconds += time.perf_counter() - evaluating
        self.evaluations += 1
        self.steps.append(self.step)
        self.scores.append(score)
        self.seconds += time.perf_counter() - started
        return self.step, score

    def known_start(self, score: float) -> None:
        """Record the dev score of the untrained head (step 0) without evaluating it, when the same head (pooling,
        options and seed; the learning rate does not change it) has been evaluated already."""
        if self.steps or self.step:
            raise ValueError(f"{self.candidate.id}: the start can only be recorded before any other point")
        self.steps.append(0)
        self.scores.append(float(score))

    @property
    def finished(self) -> bool:
        return self.step >= self.space.steps and bool(self.steps)

    # --------------------------------------------------------------------------------- checkpoints

    def save_checkpoint(self, path: str | Path) -> None:
        """Everything needed to continue exactly where the run is, written atomically."""
        write_bytes_atomically(path, self.checkpoint_bytes())

    def checkpoint_bytes(self) -> bytes:
        """The checkpoint :meth:`save_checkpoint` writes, as bytes (sent between processes of a distributed sweep)."""
        payload: dict[str, Any] = {
            "candidate": self.candidate.id, "step": self.step, "steps": self.steps, "scores": self.scores,
            "seconds": self.seconds, "evaluations": self.evaluations, "eval_seconds": self.eval_seconds,
            "batches": self.batches.state(), **self.training.state_dict(),
        }
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        return buffer.getvalue()

    def weights_bytes(self) -> bytes:
        """What training changed (the head, and the base's adapters if any) as safetensors bytes."""
        from safetensors.torch import save

        return save({name: tensor.cpu().contiguous() for name, tensor in self.training.trained_weights().items()})

    def load_weights(self, data: bytes) -> None:
        """Set what training changes from :meth:`weights_bytes` of the same candidate's run."""
        from safetensors.torch import load

        self.training.load_trained_weights(load(data))

    def load_checkpoint(self, path: str | Path | IO[bytes]) -> None:
        # weights_only: tensors, numbers, strings and containers only; a planted pickle is refused, never executed
        payload = torch.load(path, map_location=self.trainer.device, weights_only=True)
        if payload["candidate"] != self.candidate.id:
            raise ValueError(f"checkpoint {path} belongs to {payload['candidate']}, not {self.candidate.id}")
        if "batches" not in payload:
            raise ValueError(f"checkpoint {path} was written by an older st-pooling (another batch order): delete the "
                             "search folder's checkpoints/ to retrain its candidates, or run the search anew")
        self.training.load_state_dict(payload)
        self.batches.restore(payload["batches"])
        self.steps, self.scores, self.seconds = list(payload["steps"]), list(payload["scores"]), payload["seconds"]
        self.evaluations, self.eval_seconds = payload.get("evaluations", 0), payload.get("eval_seconds", 0.0)

    def save_model(self, folder: str | Path) -> Path:
        """Save the model with this run's head, ready for ``SentenceTransformer(folder)`` after
        ``import st_pooling``; written beside ``folder`` and renamed into place."""
        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        partial = folder.with_name(f".{folder.name}.partial")
        if partial.exists():
            _remove_tree(partial)
        self.model.save(str(partial))
        (partial / "search_candidate.json").write_text(json.dumps(
            {**self.candidate.to_dict(), "label": self.candidate.label, "dev_curve_steps": self.steps,
             "dev_curve_scores": [float(np.round(score, 6)) for score in self.scores]}, indent=2), encoding="utf-8")
        write_model_card(partial, self.model)  # Hub-ready card: st-pooling, the pooling, how to load it
        return replace_folder(partial, folder)


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
