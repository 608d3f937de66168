"""Compare pooling configurations on one base model: mteb scores, paired bootstrap CIs, Wilcoxon per task type."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import mteb
import numpy as np
from mteb.abstasks import AbsTask
from mteb.models import ModelMeta
from mteb.models.model_meta import ScoringFunction

import st_pooling
from st_pooling.data import ClassificationData, ClusteringData, RetrievalData, STSData
from st_pooling.evaluation.item_scores import (
    ItemScores,
    classification_item_scores,
    clustering_item_scores,
    retrieval_item_scores,
    sts_item_scores,
)
from st_pooling.evaluation.runner import PoolingEncoder, PoolingSpec, SharedForwardEmbedder
from st_pooling.evaluation.stats import BootstrapResult, WilcoxonResult, paired_bootstrap, wilcoxon_by_task_type
from st_pooling.evaluation.local_tasks import LocalTask
from st_pooling.models import build_transformer, pooling_for, reads_last_token
from st_pooling.modules import pooling_class

logger = logging.getLogger(__name__)


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


def safe_name(text: str) -> str:
    """A label made safe for a file name and an mteb model name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")


def model_meta(base: str, label: str, dim: int, n_parameters: int | None) -> ModelMeta:
    """The mteb metadata of one configuration; its name decides where mteb stores the results."""
    return ModelMeta.create_empty(overwrites=dict(
        name=f"st-pooling/{safe_name(Path(base).name or base)}__{safe_name(label)}",
        revision=st_pooling.__version__, similarity_fn_name=ScoringFunction.COSINE, embed_dim=dim, n_parameters=n_parameters,
        framework=["Sentence Transformers", "PyTorch"],
    ))


def item_scores_for(task: AbsTask, embedder: SharedForwardEmbedder, label: str, seed: int = 0) -> ItemScores | None:
    """Per-item scores of one pooling on a local task (None for tasks whose items st-pooling cannot see)."""
    if not isinstance(task, LocalTask):
        return None
    data = task.local_data()

    def embed(texts: Sequence[str]) -> np.ndarray:
        return embedder.embeddings(list(texts), label)

    if isinstance(data, STSData):
        return sts_item_scores(embed(data.sentences1), embed(data.sentences2), data.scores)
    if isinstance(data, ClassificationData):
        return classification_item_scores(embed(data.train_texts), data.train_labels, embed(data.test_texts),
                                          data.test_labels, seed=seed)
    if isinstance(data, ClusteringData):
        return clustering_item_scores(embed(data.texts), data.labels, seed=seed)
    if isinstance(data, RetrievalData):
        query_ids = [q for q in data.queries if any(gain > 0 for gain in data.qrels.get(q, {}).values())]
        corpus_ids = list(data.corpus)
        return retrieval_item_scores(embed([data.queries[q] for q in query_ids]),
                                     embed([data.corpus[d] for d in corpus_ids]), query_ids, corpus_ids, data.qrels,
                                     ignore_identical_ids=data.ignore_identical_ids)
    return None


def compare_poolings(base: str, specs: Sequence[PoolingSpec], tasks: Sequence[AbsTask], output_dir: str | Path, *,
                     reference: str | None = None, batch_size: int = 32, max_seq_length: int | None = None,
                     attention_mode: str | None = None, n_resamples: int = 1000, seed: int = 0,
                     show_progress_bar: bool = True, device: str | None = None) -> Comparison:
    """Evaluate every pooling in ``specs`` on ``tasks`` with one shared forward pass of ``base``.

    mteb writes each configuration's results in its usual layout under ``output_dir/mteb``; the returned
    :class:`Comparison` holds the main scores and the paired-bootstrap / Wilcoxon statistics against ``reference``
    (default: the first spec).
    """
    if not specs:
        raise ValueError("give at least one pooling to compare")
    labels = [spec.label for spec in specs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"the same pooling configuration is listed twice: {labels}")
    reference = reference or labels[0]
    if reference not in labels:
        raise ValueError(f"reference {reference!r} is not among the compared poolings {labels}")
    for spec in specs:
        pooling_class(spec.pooling)  # fail on an unknown name before any heavy work
    needs_layers = any(pooling_class(spec.pooling).needs_layers for spec in specs)
    # one forward pass serves every pooling: if any reads the last token, every text ends with EOS
    reads_last = any(reads_last_token(spec.pooling, dict(spec.options)) for spec in specs)
    transformer = build_transformer(base, output_hidden_states=needs_layers, max_seq_length=max_seq_length,
                                    attention_mode=attention_mode, append_eos=True if reads_last else None)
    poolings = {spec.label: pooling_for(transformer, spec.pooling, **dict(spec.options)) for spec in specs}
    embedder = SharedForwardEmbedder(transformer, poolings, batch_size=batch_size,
                                     show_progress_bar=show_progress_bar, device=device)
    base_parameters = sum(p.numel() for p in transformer.parameters())
    output_dir = Path(output_dir)
    cache = mteb.ResultCache(cache_path=output_dir / "mteb")
    dim = transformer.get_embedding_dimension()
    comparison = Comparison(base=base, labels=labels, reference=reference, scores={label: {} for label in labels},
                            task_types={}, main_metrics={}, results_dir=output_dir / "mteb")
    for task in tasks:
        name = task.metadata.name
        comparison.task_types[name] = task.metadata.type
        comparison.main_metrics[name] = task.metadata.main_score
        per_item: dict[str, ItemScores | None] = {}
        for label in labels:
            meta = model_meta(base, label, dim, base_parameters + poolings[label].num_parameters())
            encoder = PoolingEncoder(embedder, label, meta)
            result = mteb.evaluate(encoder, task, cache=cache, overwrite_strategy="always",
                                   encode_kwargs={"batch_size": batch_size, "show_progress_bar": False},
                                   show_progress_bar=show_progress_bar)
            comparison.scores[label][name] = float(result.task_results[0].get_score())
            per_item[label] = item_scores_for(task, embedder, label, seed=seed)
        if per_item[reference] is not None:
            for label in labels:
                if label != reference:
                    comparison.bootstrap.setdefault(label, {})[name] = paired_bootstrap(
                        per_item[label], per_item[reference], n_resamples=n_resamples, seed=seed)
    for label in labels:
        if label != reference:
            comparison.wilcoxon[label] = wilcoxon_by_task_type(comparison.scores[label], comparison.scores[reference],
                                                               comparison.task_types)
    comparison.forward_texts = embedder.forward_texts
    return comparison
