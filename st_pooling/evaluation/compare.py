"""Compare pooling configurations on one base model: mteb scores, paired bootstrap CIs, Wilcoxon per task type."""

from __future__ import annotations

import copy
import functools
import json
import logging
import operator
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mteb
import numpy as np
import torch
from mteb.abstasks import AbsTask, AbsTaskClassification
from mteb.models import ModelMeta
from mteb.models.model_meta import ScoringFunction
from mteb.results import TaskResult
from mteb.types import EncodeKwargs
from sentence_transformers.sentence_transformer.modules import Transformer
from sklearn.metrics import v_measure_score

from st_pooling import __version__
from st_pooling.data import ClassificationData, ClusteringData, RetrievalData, STSData
from st_pooling.evaluation.item_scores import (
    ItemScores,
    classification_item_scores,
    clustering_item_scores,
    retrieval_item_scores,
    sts_item_scores_from_cosines,
)
from st_pooling.evaluation.shared_forward import (
    ModelEntry,
    PoolingEncoder,
    SharedForwardEmbedder,
    transformer_signature,
)
from st_pooling.evaluation.stats import (
    CORRECTIONS,
    BootstrapResult,
    WilcoxonResult,
    check_bootstrap_settings,
    corrected,
    paired_bootstrap,
    wilcoxon_by_task_type,
)
from st_pooling.evaluation.local_tasks import LocalTask
from st_pooling.models import build_transformer, pooling_for
from st_pooling.modules.base import BaseNeeds, PoolingModule
from st_pooling.modules.spec import PoolingSpec

logger = logging.getLogger(__name__)

# Per-item scores must reproduce mteb's main score to this, or no interval is printed. mteb rounds retrieval metrics
# to 5 decimals (its retrieval evaluator), so there the bound is half that rounding unit.
SCORE_TOLERANCE = {"Retrieval": 0.5e-5 + 1e-9}
DEFAULT_SCORE_TOLERANCE = 1e-6


@dataclass
class Comparison:
    """Everything a comparison measured: mteb main scores and the statistics against the reference pooling."""

    base: str
    labels: list[str]
    reference: str
    scores: dict[str, dict[str, float]]  # label -> task -> mteb main score
    task_types: dict[str, str]  # task -> type
    main_metrics: dict[str, str]  # task -> main metric name
    bootstrap: dict[str, dict[str, BootstrapResult]] = field(default_factory=dict)  # label -> task -> vs reference
    wilcoxon: dict[str, dict[str, WilcoxonResult]] = field(default_factory=dict)  # label -> type -> vs reference
    forward_texts: int = 0
    results_dir: Path | None = None
    correction: str = "holm"  # of the p-values behind the significance marks: holm | none


def safe_name(text: str) -> str:
    """A label made safe for a file name and an mteb model name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")


def model_meta(base: str, label: str, dim: int, n_parameters: int | None) -> ModelMeta:
    """The mteb metadata of one configuration; its name decides where mteb stores the results."""
    return ModelMeta.create_empty(overwrites=dict(
        name=f"st-pooling/{safe_name(Path(base).name or base)}__{safe_name(label)}",
        revision=__version__, similarity_fn_name=ScoringFunction.COSINE, embed_dim=dim, n_parameters=n_parameters,
        framework=["Sentence Transformers", "PyTorch"],
    ))


@dataclass
class TaskRun:
    """One configuration's mteb evaluation of one task, with what its per-item scores are read from."""

    task: AbsTask  # the copy mteb evaluated
    result: TaskResult
    prediction_folder: Path  # mteb wrote its predictions here
    sampler: random.Random  # the task's random state before the evaluation: which documents each clustering run drew

    @property
    def score(self) -> float:
        return float(self.result.get_score())

    def predictions(self) -> Any:
        """mteb's predictions for the task's one subset and split (mteb's documented file name), or None."""
        path = self.prediction_folder / f"{self.task.metadata.name}_predictions.json"
        if not path.is_file():
            return None
        subsets = {k: v for k, v in json.loads(path.read_text(encoding="utf-8")).items() if k != "mteb_model_meta"}
        if len(subsets) != 1:
            return None
        splits = next(iter(subsets.values()))
        return splits.get("test") if len(splits) == 1 else None


def with_label_array(task: AbsTask) -> AbsTask:
    """``task``, whose classification metrics receive the test labels as one array.

    mteb 2.x gives its nine scikit-learn metrics ``eval_split[label_column]``, which datasets >= 4 returns as a lazy
    ``Column``; each metric converts it row by row. On PangLee (1,000 test texts, 10 experiments) that is ~2.5 s a
    configuration, most of what comparing six poolings cost beyond one. No public hook sets the labels' type, so this
    wraps the task copy's private ``_calculate_scores`` (AbsTaskClassification) to read the column once
    (``column[:]``, one Arrow read): the same labels, the same scores (tests/test_shared_forward.py checks them
    against a plain ``mteb.evaluate``). Other tasks are returned as they are.
    """
    if isinstance(task, AbsTaskClassification) and hasattr(task, "_calculate_scores"):
        calculate = task._calculate_scores

        def calculate_on_array(y_test: Any, y_pred: Any) -> Any:
            return calculate(np.asarray(y_test[:]), y_pred)

        task._calculate_scores = calculate_on_array  # type: ignore[method-assign]
    return task


def run_task(encoder: PoolingEncoder, task: AbsTask, cache: mteb.ResultCache, prediction_folder: Path, *,
             batch_size: int = 32, show_progress_bar: bool = False) -> TaskRun:
    """Evaluate ``encoder`` on a fresh copy of ``task`` through mteb, keeping its predictions.

    A fresh copy per configuration: mteb draws a clustering task's runs from the task's random state, which an
    evaluation advances, so every configuration must start from the same state to be scored on the same documents.
    """
    fresh = with_label_array(copy.deepcopy(task))
    sampler = copy.deepcopy(fresh.rng_state)  # public attribute of mteb's AbsTask
    result = mteb.evaluate(encoder, fresh, cache=cache, overwrite_strategy="always", prediction_folder=prediction_folder,
                           encode_kwargs=EncodeKwargs(batch_size=batch_size, show_progress_bar=False),
                           show_progress_bar=show_progress_bar)
    return TaskRun(task=fresh, result=result.task_results[0], prediction_folder=prediction_folder, sampler=sampler)


def _clustering_runs(run: TaskRun, labels: Sequence[object]) -> tuple[np.ndarray, np.ndarray] | None:
    """(documents, clusters) of each of mteb's clustering runs: clusters from mteb's predictions; documents by
    replaying mteb's draw (``rng.choices(range(n), k=sample size)`` per run) from the task's random state. mteb does
    not write which documents a run drew, so the replay is checked: its v-measures must equal mteb's per run."""
    predictions = run.predictions()
    if not predictions or set(predictions) != {"Level 0"}:
        return None
    clusters = np.asarray(predictions["Level 0"], dtype=np.int64)  # (runs, sample size)
    sampler = copy.deepcopy(run.sampler)
    documents = np.asarray([sampler.choices(range(len(labels)), k=clusters.shape[1]) for _ in clusters])
    mteb_per_run = run.result.scores["test"][0].get("v_measures", {}).get("Level 0")
    label_array = np.asarray(labels)
    replayed = [v_measure_score(label_array[d], c) for d, c in zip(documents, clusters)]
    if mteb_per_run is None or not np.allclose(replayed, mteb_per_run, rtol=0, atol=1e-9):
        logger.warning("%s: the replayed clustering runs do not reproduce mteb's per-run scores",
                       run.task.metadata.name)
        return None
    return documents, clusters


def item_scores_for(run: TaskRun, embedder: SharedForwardEmbedder, label: str) -> ItemScores | None:
    """Per-item scores of one configuration on a local task, whose metric over all items is mteb's main score
    (None where st-pooling cannot see the items, or the main metric does not decompose into them)."""
    task = run.task
    if not isinstance(task, LocalTask):
        return None
    data = task.local_data()

    def embed(texts: Sequence[str]) -> np.ndarray:
        return embedder.embeddings(list(texts), label)

    if isinstance(data, STSData):
        predictions = run.predictions()  # mteb's own cosines: float32 rounding can swap near-tied ranks otherwise
        if predictions is None or "cosine_scores" not in predictions:
            return None
        scores = sts_item_scores_from_cosines(predictions["cosine_scores"], data.scores)
    elif isinstance(data, ClassificationData):
        predictions = run.predictions()
        if task.metadata.main_score != "accuracy" or predictions is None:
            return None
        # the label order the task gave mteb (LocalClassificationTask.to_mteb_split read it from this same data)
        index = {name: position for position, name in enumerate(data.label_names)}
        scores = classification_item_scores(np.asarray(predictions), [index[name] for name in data.test_labels])
    elif isinstance(data, ClusteringData):
        runs = _clustering_runs(run, data.labels)
        if runs is None:
            return None
        scores = clustering_item_scores(*runs, data.labels)
    elif isinstance(data, RetrievalData):
        query_ids = [q for q in data.queries if any(gain > 0 for gain in data.qrels.get(q, {}).values())]
        corpus_ids = list(data.corpus)
        scores = retrieval_item_scores(embed([data.queries[q] for q in query_ids]),
                                       embed([data.corpus[d] for d in corpus_ids]), query_ids, corpus_ids,
                                       data.qrels, ignore_identical_ids=data.ignore_identical_ids)
    else:
        return None
    tolerance = SCORE_TOLERANCE.get(task.metadata.type, DEFAULT_SCORE_TOLERANCE)
    if abs(scores.full_score() - run.score) > tolerance:  # never print a CI of another quantity
        logger.warning("%s: per-item scores give %.6f, mteb %.6f for %s: no confidence interval shown",
                       task.metadata.name, scores.full_score(), run.score, label)
        return None
    return scores


def against_reference(per_item: dict[str, ItemScores | None], reference: str, *, n_resamples: int = 1000,
                      seed: int = 0, correction: str = "holm") -> dict[str, BootstrapResult]:
    """Paired bootstrap of every configuration against ``reference`` on one task, corrected for their number.
    Configurations without per-item scores get no entry ("n/a" in the tables)."""
    reference_scores = per_item[reference]
    if reference_scores is None:
        return {}
    results = {label: paired_bootstrap(scores, reference_scores, n_resamples=n_resamples, seed=seed)
               for label, scores in per_item.items() if label != reference and scores is not None}
    return corrected(results, correction)


def score_tasks(embedders: SharedForwardEmbedder | Sequence[SharedForwardEmbedder], base: str,
                tasks: Sequence[AbsTask], output_dir: str | Path, *, reference: str, correction: str = "holm",
                batch_size: int = 32, show_progress_bar: bool = True
                ) -> tuple[Comparison, dict[str, dict[str, ItemScores | None]]]:
    """Every pooling of every embedder on every task through mteb (results under ``output_dir/mteb``, predictions
    under ``output_dir/predictions``): a :class:`Comparison` holding the main scores (no statistics yet) and the
    per-item scores behind them, task -> pooling label -> ItemScores (None where they cannot be had)."""
    output_dir = Path(output_dir)
    embedders = [embedders] if isinstance(embedders, SharedForwardEmbedder) else list(embedders)
    members = [(label, embedder) for embedder in embedders for label in embedder.poolings]
    labels = [label for label, _ in members]
    cache = mteb.ResultCache(cache_path=output_dir / "mteb")
    comparison = Comparison(base=base, labels=labels, reference=reference, scores={label: {} for label in labels},
                            task_types={}, main_metrics={}, results_dir=output_dir / "mteb", correction=correction)
    items: dict[str, dict[str, ItemScores | None]] = {}
    for task in tasks:
        name = task.metadata.name
        comparison.task_types[name] = task.metadata.type
        comparison.main_metrics[name] = task.metadata.main_score
        items[name] = {}
        for label, embedder in members:
            parameters = sum(p.numel() for module in (embedder.transformer, embedder.poolings[label])
                             for p in module.parameters())
            meta = model_meta(base, label, embedder.transformer.get_embedding_dimension(), parameters)
            run = run_task(PoolingEncoder(embedder, label, meta), task, cache,
                           output_dir / "predictions" / safe_name(label), batch_size=batch_size,
                           show_progress_bar=show_progress_bar)
            comparison.scores[label][name] = run.score
            items[name][label] = item_scores_for(run, embedder, label)
    comparison.forward_texts = sum(embedder.forward_texts for embedder in embedders)
    return comparison, items


def shared_forward_groups(base: str, specs: Sequence[PoolingSpec | ModelEntry], *, max_seq_length: int | None = None,
                          attention_mode: str | None = None) -> list[tuple[Transformer, dict[str, torch.nn.Module]]]:
    """The transformers to run and the poolings each serves: one base for every pooling spec, built with what any
    compared pooling needs, and every whole model on the base it shares (same weights and settings) or on its own."""
    entries = {spec.label: spec.parts() for spec in specs if isinstance(spec, ModelEntry)}
    needs = functools.reduce(operator.or_, [spec.base_needs() for spec in specs if isinstance(spec, PoolingSpec)] +
                             [pooling.base_needs() for _, pooling in entries.values()
                              if isinstance(pooling, PoolingModule)], BaseNeeds())
    groups: dict[tuple[Any, ...], tuple[Transformer, dict[str, torch.nn.Module]]] = {}
    pooling_specs = [spec for spec in specs if isinstance(spec, PoolingSpec)]
    if pooling_specs:
        transformer = build_transformer(base, needs, max_seq_length=max_seq_length, attention_mode=attention_mode)
        groups[transformer_signature(transformer)] = (transformer, {
            spec.label: pooling_for(transformer, spec.pooling, **dict(spec.options)) for spec in pooling_specs})
    for label, (transformer, pooling) in entries.items():
        groups.setdefault(transformer_signature(transformer), (transformer, {}))[1][label] = pooling
    order = {spec.label: position for position, spec in enumerate(specs)}
    return [(transformer, dict(sorted(poolings.items(), key=lambda item: order[item[0]])))
            for transformer, poolings in groups.values()]


def compare_poolings(base: str, specs: Sequence[PoolingSpec | ModelEntry], tasks: Sequence[AbsTask],
                     output_dir: str | Path, *, reference: str | None = None, batch_size: int = 32, max_seq_length: int | None = None,
                     attention_mode: str | None = None, n_resamples: int = 1000, seed: int = 0,
                     correction: str = "holm", show_progress_bar: bool = True,
                     device: str | None = None, devices: Sequence[str] | None = None) -> Comparison:
    """Evaluate every pooling in ``specs`` on ``tasks`` with one shared forward pass of ``base``.

    ``specs`` are pooling specs (built on ``base``) and whole models (:class:`ModelEntry`: a saved folder or a model
    in memory, e.g. a trained head), evaluated as they are, with their own base settings; models whose base equals
    ``base`` (a head trained on the frozen base) share its forward pass.

    mteb writes each configuration's results in its usual layout under ``output_dir/mteb``; the returned
    :class:`Comparison` holds the main scores and the paired-bootstrap / Wilcoxon statistics against ``reference``
    (default: the first spec). With ``correction="holm"`` the p-values behind the significance marks are corrected
    for testing every other configuration against the reference (per task, and per task type for Wilcoxon).
    ``devices`` runs the forward passes in that many processes (sentence-transformers' multi-process pool, e.g.
    ``["cuda:0", "cuda:1"]`` or ``["cpu"] * 2``); the scores are the single process's up to float rounding.
    """
    if not specs:
        raise ValueError("give at least one pooling to compare")
    labels = [spec.label for spec in specs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"the same pooling configuration is listed twice: {labels}")
    reference = reference or labels[0]
    if reference not in labels:
        raise ValueError(f"reference {reference!r} is not among the compared poolings {labels}")
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {', '.join(CORRECTIONS)}, got {correction!r}")
    check_bootstrap_settings(n_resamples)  # before any evaluation, not after it
    # one forward pass serves every pooling of one base: with what any of them needs (if one reads the last token,
    # every text ends with EOS); a whole model with a base of its own gets its own forward pass
    embedders = [SharedForwardEmbedder(transformer, poolings, batch_size=batch_size,
                                       show_progress_bar=show_progress_bar, device=device, devices=devices)
                 for transformer, poolings in shared_forward_groups(base, specs, max_seq_length=max_seq_length,
                                                                    attention_mode=attention_mode)]
    try:
        comparison, items = score_tasks(embedders, base, tasks, output_dir, reference=reference,
                                        correction=correction, batch_size=batch_size,
                                        show_progress_bar=show_progress_bar)
    finally:
        for embedder in embedders:
            embedder.close()
    for name, per_item in items.items():
        for label, result in against_reference(per_item, reference, n_resamples=n_resamples, seed=seed,
                                               correction=correction).items():
            comparison.bootstrap.setdefault(label, {})[name] = result
    wilcoxon = {label: wilcoxon_by_task_type(comparison.scores[label], comparison.scores[reference],
                                             comparison.task_types) for label in labels if label != reference}
    for task_type in {t for per_type in wilcoxon.values() for t in per_type}:
        adjusted = corrected({label: per_type[task_type] for label, per_type in wilcoxon.items()}, correction)
        for label, adjusted_result in adjusted.items():
            wilcoxon[label][task_type] = adjusted_result
    comparison.wilcoxon = wilcoxon
    return comparison
