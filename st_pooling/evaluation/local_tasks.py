"""The base classes of st-pooling's local mteb tasks: data from an st-pooling loader instead of the Hub.

Local tasks are real mteb task classes (subclasses of ``AbsTaskSTS``, ``AbsTaskClassification``,
``AbsTaskClustering`` and ``AbsTaskRetrieval``) whose ``load_data`` reads files with the loaders of
:mod:`st_pooling.data`, so they run offline through ``mteb.evaluate`` like any other mteb task. The declared tasks
and the registry are in :mod:`st_pooling.evaluation.tasks`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from datasets import Dataset, DatasetDict
from mteb.abstasks import AbsTaskClassification, AbsTaskClustering, AbsTaskRetrieval, AbsTaskSTS
from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData
from mteb.abstasks.task_metadata import (
    AnnotatorType,
    TaskCategory,
    TaskDomain,
    TaskMetadata,
    TaskSubtype,
    TaskType,
)

from st_pooling.data import (
    ClassificationData,
    ClusteringData,
    EvaluationData,
    RetrievalData,
    STSData,
    shared_data_dir,
)
from st_pooling.data.paths import DATA_DIR_ENV_VAR

SUBSET_SEED = 0
MAX_DOCUMENTS_PER_CLUSTERING = 2048

_MAIN_SCORES = {
    "STS": "cosine_spearman",
    "Classification": "accuracy",
    "Clustering": "v_measure",
    "Retrieval": "ndcg_at_10",
}
_CATEGORIES: dict[str, TaskCategory] = {"STS": "t2t", "Classification": "t2c", "Clustering": "t2c", "Retrieval": "t2t"}


def local_task_metadata(
    name: str,
    task_type: TaskType,
    description: str,
    reference: str,
    *,
    domains: list[TaskDomain],
    license: str,
    date: tuple[str, str],
    annotations: AnnotatorType = "human-annotated",
    subtypes: list[TaskSubtype] | None = None,
) -> TaskMetadata:
    """TaskMetadata with the fields every local task shares (English, one "test" split, local data)."""
    return TaskMetadata(
        name=name,
        description=description,
        reference=reference,
        dataset={"path": f"st-pooling-local/{name}", "revision": "st-pooling-local"},
        type=task_type,
        category=_CATEGORIES[task_type],
        modalities=["text"],
        eval_splits=["test"],
        eval_langs=["eng-Latn"],
        main_score=_MAIN_SCORES[task_type],
        date=date,
        domains=domains,
        task_subtypes=subtypes or [],
        license=license,
        annotations_creators=annotations,
        dialect=[],
        sample_creation="found",
        bibtex_citation="",
    )


def disk_folder(folder: Path | None) -> Path:
    """``folder`` for a task that reads its data from disk (:meth:`LocalTask.dataset_folder` gives None only to
    embedded tasks, whose ``data_folder`` is None)."""
    if folder is None:
        raise FileNotFoundError("this task reads its data from disk, but no data folder is known")
    return folder


class LocalTask:
    """What every local task adds to its mteb base class: data from an st-pooling loader.

    Subclasses set ``data_folder`` (the data set's folder under the shared data directory, or None
    for the embedded gensim data) and implement :meth:`read_data`.
    """

    data_folder: ClassVar[str | None] = None
    metadata: TaskMetadata
    dataset: Any  # mteb's AbsTask.dataset; load_data fills it

    def __init__(
        self, data_dir: str | Path | None = None, max_items: int | None = None, seed: int = 42, **kwargs: Any
    ) -> None:
        """Create the task; nothing is read until mteb calls :meth:`load_data`.

        Args:
            data_dir: for shared-data tasks, the folder holding the data sets' folders (default
                :func:`st_pooling.data.shared_data_dir`) or the data set's own folder. Ignored by the
                embedded tasks, which always read gensim's bundled files.
            max_items: evaluate on a deterministic subset of at most this many items per split
                (queries for retrieval), see the ``subset`` methods of :mod:`st_pooling.data.types`.
            seed: mteb's seed for the task's own sampling (classifier training sets, k-means).
        """
        if max_items is not None and (not isinstance(max_items, int) or max_items < 1):
            raise ValueError(f"max_items must be a positive integer or None, got {max_items!r}")
        super().__init__(seed=seed, **kwargs)  # type: ignore[call-arg]
        self.data_dir = None if data_dir is None else Path(data_dir).expanduser()
        self.max_items = max_items
        self._local_data: EvaluationData | None = None
        revision = "st-pooling-local"
        if max_items is not None:
            revision += f";max_items={max_items};seed={SUBSET_SEED}"
        dataset = {"path": self.metadata.dataset["path"], "revision": revision}
        self.metadata = self.metadata.model_copy(update={"dataset": dataset})

    def read_data(self, folder: Path | None) -> EvaluationData:
        """Read the full data set from ``folder`` (None for embedded tasks)."""
        raise NotImplementedError

    def dataset_folder(self) -> Path | None:
        """The folder the loader reads: None for embedded tasks, else resolved from ``data_dir``."""
        if self.data_folder is None:
            return None
        root = self.data_dir if self.data_dir is not None else shared_data_dir()
        if root is None:
            raise FileNotFoundError(
                f"Task {self.metadata.name} reads the {self.data_folder!r} data set from disk, but no data folder is "
                f"known: pass data_dir=... (the folder holding {self.data_folder}/) or set {DATA_DIR_ENV_VAR}."
            )
        return root / self.data_folder if (root / self.data_folder).is_dir() else root

    def local_data(self) -> EvaluationData:
        """The data behind the task (after the ``max_items`` subset), read once."""
        if self._local_data is None:
            data = self.read_data(self.dataset_folder())
            if self.max_items is not None:
                data = data.subset(self.max_items, seed=SUBSET_SEED)
            self._local_data = data
        return self._local_data

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        """mteb's hook: fill ``self.dataset`` from the local data instead of the Hub."""
        if getattr(self, "data_loaded", False):
            return
        self.dataset = {"default": self.to_mteb_split(self.local_data())}
        self.data_loaded = True

    def to_mteb_split(self, data: Any) -> Any:
        """Convert the dataclass to the split structure the mteb base class reads."""
        raise NotImplementedError


class LocalSTSTask(LocalTask, AbsTaskSTS):
    """An STS task over an :class:`STSData` (pairs in ``sentence1``/``sentence2``, score in ``score``), scored by
    mteb's own STS evaluation. (Texts repeated across pairs are encoded once per occurrence there; st-pooling's
    comparison serves the repeats from its embedding cache.)"""

    def to_mteb_split(self, data: STSData) -> DatasetDict:
        # mteb annotates min_score/max_score as int; an STS range can be fractional and mteb only divides by it
        self.min_score, self.max_score = data.min_score, data.max_score  # type: ignore[assignment]
        pairs = {"sentence1": data.sentences1, "sentence2": data.sentences2, "score": data.scores}
        return DatasetDict({"test": Dataset.from_dict(pairs)})


class LocalClassificationTask(LocalTask, AbsTaskClassification):
    """A classification task over a :class:`ClassificationData`.

    mteb's protocol: a logistic regression is trained ``n_experiments`` times on ``samples_per_label``
    train items per label drawn with the task seed, and scored on the whole test split.
    """

    samples_per_label = 32
    n_experiments = 10

    def to_mteb_split(self, data: ClassificationData) -> DatasetDict:
        self.label_names = data.label_names
        index = {label: position for position, label in enumerate(self.label_names)}
        train = {"text": data.train_texts, "label": [index[label] for label in data.train_labels]}
        test = {"text": data.test_texts, "label": [index[label] for label in data.test_labels]}
        return DatasetDict({"train": Dataset.from_dict(train), "test": Dataset.from_dict(test)})


class LocalClusteringTask(LocalTask, AbsTaskClustering):
    """A clustering task over a :class:`ClusteringData`.

    Every text is embedded once; each of ``n_clusters`` k-means runs clusters a resample (with
    replacement, mteb's bootstrap) of ``min(len(data), 2048)`` texts; the score is the mean v-measure.
    """

    max_fraction_of_documents_to_embed = None
    max_document_to_embed = None
    n_clusters = 10

    def to_mteb_split(self, data: ClusteringData) -> DatasetDict:
        self.max_documents_per_cluster = min(len(data), MAX_DOCUMENTS_PER_CLUSTERING)
        return DatasetDict({"test": Dataset.from_dict({"sentences": data.texts, "labels": data.labels})})


class LocalRetrievalTask(LocalTask, AbsTaskRetrieval):
    """A retrieval task over a :class:`RetrievalData` (only judgments with gain > 0 are passed on)."""

    def to_mteb_split(self, data: RetrievalData) -> dict[str, RetrievalSplitData]:
        self.ignore_identical_ids = data.ignore_identical_ids
        relevant = {
            query: {doc: gain for doc, gain in judged.items() if gain > 0} for query, judged in data.qrels.items()
        }
        split = RetrievalSplitData(
            corpus=Dataset.from_dict({"id": list(data.corpus), "text": list(data.corpus.values())}),
            queries=Dataset.from_dict({"id": list(data.queries), "text": list(data.queries.values())}),
            relevant_docs={query: judged for query, judged in relevant.items() if judged},
            top_ranked=None,
        )
        return {"test": split}


# --- embedded default tasks (gensim's bundled data) ---------------------------------------------
