"""MTEB 2.x tasks built from st-pooling's own data loaders, plus one entry point for mteb's tasks.

Local tasks are real mteb task classes (subclasses of ``AbsTaskSTS``, ``AbsTaskClassification``,
``AbsTaskClustering`` and ``AbsTaskRetrieval``) whose ``load_data`` reads files with the loaders of
:mod:`st_pooling.data` instead of downloading from the Hugging Face Hub, so they run offline through
``mteb.evaluate(model, tasks, cache=mteb.ResultCache(cache_path=...))`` like any other mteb task.

Main scores follow mteb's conventions: STS ``cosine_spearman``, classification ``accuracy``,
clustering ``v_measure``, retrieval ``ndcg_at_10``.

Note on the result cache: mteb reuses a cached result file whenever one exists for the model and
task name, whatever the data behind it. A run with ``max_items`` records the subset in the result's
``dataset_revision`` (e.g. ``"st-pooling-local;max_items=50;seed=0"``), but to keep full and subset
runs apart give them different cache folders or pass ``overwrite_strategy="always"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import mteb
import numpy as np
from datasets import Dataset, DatasetDict
from mteb._create_dataloaders import create_dataloader
from mteb._evaluators.any_sts_evaluator import STSEvaluatorScores
from mteb.abstasks import AbsTask, AbsTaskClassification, AbsTaskClustering, AbsTaskRetrieval, AbsTaskSTS
from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData
from mteb.abstasks.task_metadata import TaskMetadata
from mteb.models import EncoderProtocol
from mteb.similarity_functions import compute_pairwise_similarity
from sklearn.metrics.pairwise import paired_cosine_distances, paired_euclidean_distances, paired_manhattan_distances

from st_pooling.data import (
    ClassificationData,
    ClusteringData,
    EvaluationData,
    RetrievalData,
    STSData,
    load_20newsgroups_classification,
    load_20newsgroups_clustering,
    load_banking77_classification,
    load_banking77_clustering,
    load_cisi,
    load_cranfield,
    load_lee_retrieval,
    load_lee_sts,
    load_mini_newsgroups,
    load_mr,
    load_pang_lee_polarity,
    load_sick,
    load_sst2,
    load_stsbenchmark,
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
_CATEGORIES = {"STS": "t2t", "Classification": "t2c", "Clustering": "t2c", "Retrieval": "t2t"}


def _metadata(
    name: str,
    task_type: str,
    description: str,
    reference: str,
    *,
    domains: list[str],
    license: str,
    date: tuple[str, str],
    annotations: str = "human-annotated",
    subtypes: list[str] | None = None,
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


class LocalTask:
    """What every local task adds to its mteb base class: data from an st-pooling loader.

    Subclasses set ``data_folder`` (the data set's folder under the shared data directory, or None
    for the embedded gensim data) and implement :meth:`read_data`.
    """

    data_folder: ClassVar[str | None] = None
    metadata: TaskMetadata

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
    """An STS task over an :class:`STSData` (pairs in ``sentence1``/``sentence2``, score in ``score``).

    Unlike mteb's evaluator, which encodes the first and the second sentences of every pair separately,
    each distinct text is encoded once (LeeSTS pairs 50 documents into 1,225 pairs: 50 encodings
    instead of 2,450). The scores are computed exactly as mteb computes them.
    """

    def to_mteb_split(self, data: STSData) -> DatasetDict:
        self.min_score, self.max_score = data.min_score, data.max_score
        pairs = {"sentence1": data.sentences1, "sentence2": data.sentences2, "score": data.scores}
        return DatasetDict({"test": Dataset.from_dict(pairs)})

    def _evaluate_subset(
        self,
        model: Any,
        data_split: Dataset,
        *,
        encode_kwargs: Any,
        hf_split: str,
        hf_subset: str,
        prediction_folder: Path | None = None,
        num_proc: int | None = None,
        timer: Any,
        **kwargs: Any,
    ) -> Any:
        texts1, texts2 = list(data_split["sentence1"]), list(data_split["sentence2"])
        unique_texts = list(dict.fromkeys(texts1 + texts2))
        can_share = isinstance(model, EncoderProtocol) and self.input1_prompt_type == self.input2_prompt_type
        if not can_share or len(unique_texts) == len(texts1) + len(texts2):
            return super()._evaluate_subset(
                model,
                data_split,
                encode_kwargs=encode_kwargs,
                hf_split=hf_split,
                hf_subset=hf_subset,
                prediction_folder=prediction_folder,
                num_proc=num_proc,
                timer=timer,
                **kwargs,
            )
        with timer("Encoding samples", split=hf_split, subset=hf_subset, log_message="Encoding the distinct texts"):
            embeddings = model.encode(
                create_dataloader(
                    Dataset.from_dict({"text": unique_texts}),
                    task_metadata=self.metadata,
                    num_proc=num_proc,
                    **encode_kwargs,
                ),
                task_metadata=self.metadata,
                hf_split=hf_split,
                hf_subset=hf_subset,
                prompt_type=self.input1_prompt_type,
                **encode_kwargs,
            )
        embeddings = np.asarray(embeddings)
        row_of = {text: row for row, text in enumerate(unique_texts)}
        embeddings1 = embeddings[[row_of[text] for text in texts1]]
        embeddings2 = embeddings[[row_of[text] for text in texts2]]
        scores = STSEvaluatorScores(
            cosine_scores=(1 - paired_cosine_distances(embeddings1, embeddings2)).tolist(),
            manhattan_distances=(-paired_manhattan_distances(embeddings1, embeddings2)).tolist(),
            euclidean_distances=(-paired_euclidean_distances(embeddings1, embeddings2)).tolist(),
            similarity_scores=compute_pairwise_similarity(model, embeddings1, embeddings2).tolist(),
        )
        if prediction_folder:
            self._save_task_predictions(scores, model, prediction_folder, hf_subset=hf_subset, hf_split=hf_split)
        return self._calculate_scores(scores, [self._normalize(score) for score in data_split["score"]])


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

_GENSIM = "https://github.com/piskvorky/gensim/tree/develop/gensim/test/test_data"


class LeeSTS(LocalSTSTask):
    metadata = _metadata(
        "LeeSTS",
        "STS",
        "Document similarity: all 1,225 pairs of the 50 Lee news documents scored by human raters "
        "(Lee, Pincombe and Welsh 2005), as shipped with gensim.",
        _GENSIM,
        domains=["News", "Written"],
        license="lgpl",
        date=("2001-01-01", "2005-12-31"),
    )

    def read_data(self, folder: Path | None) -> STSData:
        return load_lee_sts()


class PangLeePolarityClassification(LocalClassificationTask):
    metadata = _metadata(
        "PangLeePolarityClassification",
        "Classification",
        "Binary sentiment of 200 movie-review sentences (Pang and Lee) shipped with gensim; a fixed-seed "
        "100/100 train/test split.",
        _GENSIM,
        domains=["Reviews", "Written"],
        license="lgpl",
        date=("2002-01-01", "2005-12-31"),
        subtypes=["Sentiment/Hate speech"],
    )

    def read_data(self, folder: Path | None) -> ClassificationData:
        return load_pang_lee_polarity()


class MiniNewsgroupsClustering(LocalClusteringTask):
    metadata = _metadata(
        "MiniNewsgroupsClustering",
        "Clustering",
        "200 20-Newsgroups posts (alt.atheism, sci.space) shipped with gensim, clustered by group; "
        "texts are subject and body, other headers removed.",
        _GENSIM,
        domains=["Social", "Written"],
        license="lgpl",
        date=("1993-01-01", "1993-12-31"),
        subtypes=["Thematic clustering"],
    )

    def read_data(self, folder: Path | None) -> ClusteringData:
        return load_mini_newsgroups()


class LeeRetrieval(LocalRetrievalTask):
    metadata = _metadata(
        "LeeRetrieval",
        "Retrieval",
        "Query-by-document retrieval over the 50 Lee news documents: each document with a human "
        "similarity >= 0.5 to another is a query (48), the other documents are the candidates, graded "
        "1/2/3 at human similarity 0.5/0.7/0.9.",
        _GENSIM,
        domains=["News", "Written"],
        license="lgpl",
        date=("2001-01-01", "2005-12-31"),
        annotations="derived",
    )

    def read_data(self, folder: Path | None) -> RetrievalData:
        return load_lee_retrieval()


# --- tasks over the shared data folder ------------------------------------------------------------


class LocalSTSBenchmark(LocalSTSTask):
    data_folder = "stsbenchmark"
    metadata = _metadata(
        "LocalSTSBenchmark",
        "STS",
        "STS Benchmark test split (1,379 pairs, scores 0-5) read from sts-test.csv.",
        "https://ixa2.si.ehu.eus/stswiki/index.php/STSbenchmark",
        domains=["News", "Written", "Blog"],
        license="cc-by-sa-4.0",
        date=("2012-01-01", "2017-12-31"),
    )

    def read_data(self, folder: Path | None) -> STSData:
        return load_stsbenchmark(folder, split="test")


class LocalSICK(LocalSTSTask):
    metadata = _metadata(
        "LocalSICK",
        "STS",
        "SICK relatedness, SemEval 2014 test split of SICK_original_12col.txt (4,906 pairs, scores 1-5).",
        "https://marcobaroni.org/composes/sick.html",
        domains=["Web", "Written"],
        license="cc-by-nc-sa-3.0",
        date=("2014-01-01", "2014-12-31"),
    )
    data_folder = "sick"

    def read_data(self, folder: Path | None) -> STSData:
        return load_sick(folder, split="test")


class LocalSST2(LocalClassificationTask):
    data_folder = "sst2"
    metadata = _metadata(
        "LocalSST2",
        "Classification",
        "SST-2 binary sentiment: classifiers trained on train.tsv phrases, scored on the 872 GLUE dev "
        "sentences (test.tsv).",
        "https://nlp.stanford.edu/sentiment/",
        domains=["Reviews", "Written"],
        license="not specified",
        date=("2013-01-01", "2013-12-31"),
        subtypes=["Sentiment/Hate speech"],
    )

    def read_data(self, folder: Path | None) -> ClassificationData:
        return load_sst2(folder)


class LocalMR(LocalClassificationTask):
    data_folder = "mr"
    metadata = _metadata(
        "LocalMR",
        "Classification",
        "MR movie-review polarity (5,331 + 5,331 sentences) with a fixed-seed stratified 80/20 split.",
        "https://www.cs.cornell.edu/people/pabo/movie-review-data/",
        domains=["Reviews", "Written"],
        license="not specified",
        date=("2005-01-01", "2005-12-31"),
        subtypes=["Sentiment/Hate speech"],
    )

    def read_data(self, folder: Path | None) -> ClassificationData:
        return load_mr(folder)


class LocalBanking77Classification(LocalClassificationTask):
    data_folder = "banking77"
    metadata = _metadata(
        "LocalBanking77Classification",
        "Classification",
        "Banking77: 77 intents of online-banking queries (10,003 train / 3,080 test).",
        "https://arxiv.org/abs/2003.04807",
        domains=["Written", "Financial"],
        license="cc-by-nc-4.0",
        date=("2019-01-01", "2019-12-31"),
    )

    def read_data(self, folder: Path | None) -> ClassificationData:
        return load_banking77_classification(folder)


class LocalBanking77Clustering(LocalClusteringTask):
    data_folder = "banking77"
    metadata = _metadata(
        "LocalBanking77Clustering",
        "Clustering",
        "Banking77 test queries (3,080) clustered by their 77 intents.",
        "https://arxiv.org/abs/2003.04807",
        domains=["Written", "Financial"],
        license="cc-by-nc-4.0",
        date=("2019-01-01", "2019-12-31"),
    )

    def read_data(self, folder: Path | None) -> ClusteringData:
        return load_banking77_clustering(folder)


class Local20NewsgroupsClassification(LocalClassificationTask):
    data_folder = "20newsgroups"
    metadata = _metadata(
        "Local20NewsgroupsClassification",
        "Classification",
        "20 Newsgroups by-date split (11,314 train / 7,532 test), 20 groups; texts are subject and body.",
        "http://qwone.com/~jason/20Newsgroups/",
        domains=["Social", "Written"],
        license="not specified",
        date=("1993-01-01", "1993-12-31"),
        subtypes=["Topic classification"],
    )

    def read_data(self, folder: Path | None) -> ClassificationData:
        return load_20newsgroups_classification(folder)


class Local20NewsgroupsClustering(LocalClusteringTask):
    data_folder = "20newsgroups"
    metadata = _metadata(
        "Local20NewsgroupsClustering",
        "Clustering",
        "20 Newsgroups by-date test messages (7,532) clustered by their 20 groups; texts are the subjects "
        "only, like mteb's TwentyNewsgroupsClustering.",
        "http://qwone.com/~jason/20Newsgroups/",
        domains=["Social", "Written"],
        license="not specified",
        date=("1993-01-01", "1993-12-31"),
        subtypes=["Thematic clustering"],
    )

    def read_data(self, folder: Path | None) -> ClusteringData:
        return load_20newsgroups_clustering(folder, subject_only=True)


class LocalCranfield(LocalRetrievalTask):
    data_folder = "cranfield"
    metadata = _metadata(
        "LocalCranfield",
        "Retrieval",
        "Cranfield 1400 aerodynamics abstracts, 225 queries, graded judgments (Cleverdon codes 1-4 mapped "
        "to gains 4-1).",
        "http://ir.dcs.gla.ac.uk/resources/test_collections/cran/",
        domains=["Academic", "Engineering", "Written"],
        license="not specified",
        date=("1960-01-01", "1967-12-31"),
        annotations="expert-annotated",
    )

    def read_data(self, folder: Path | None) -> RetrievalData:
        return load_cranfield(folder)


class LocalCISI(LocalRetrievalTask):
    data_folder = "cisi"
    metadata = _metadata(
        "LocalCISI",
        "Retrieval",
        "CISI library-science abstracts (1,460), the 76 queries with judgments, binary relevance.",
        "http://ir.dcs.gla.ac.uk/resources/test_collections/cisi/",
        domains=["Academic", "Written"],
        license="not specified",
        date=("1969-01-01", "1980-12-31"),
        annotations="expert-annotated",
    )

    def read_data(self, folder: Path | None) -> RetrievalData:
        return load_cisi(folder)


EMBEDDED_DEFAULT_TASKS: list[str] = [
    "LeeSTS",
    "PangLeePolarityClassification",
    "MiniNewsgroupsClustering",
    "LeeRetrieval",
]

LOCAL_TASKS: dict[str, type[LocalTask]] = {
    task.metadata.name: task
    for task in (
        LeeSTS,
        PangLeePolarityClassification,
        MiniNewsgroupsClustering,
        LeeRetrieval,
        LocalSTSBenchmark,
        LocalSICK,
        LocalSST2,
        LocalMR,
        LocalBanking77Classification,
        LocalBanking77Clustering,
        Local20NewsgroupsClassification,
        Local20NewsgroupsClustering,
        LocalCranfield,
        LocalCISI,
    )
}


class UnknownTaskError(KeyError):
    """A task name that is neither local nor known to mteb (a KeyError with a readable message)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def get_task(name: str, data_dir: str | Path | None = None, max_items: int | None = None) -> AbsTask:
    """An mteb task by name: a local task from :data:`LOCAL_TASKS`, or any task mteb knows.

    Args:
        name: a key of :data:`LOCAL_TASKS` (offline), or an mteb task name such as ``"STSBenchmark"``
            (its data comes from the Hugging Face Hub when it is evaluated, so that needs a network).
        data_dir: folder of the shared data sets (local tasks that read files; default
            :func:`st_pooling.data.shared_data_dir`).
        max_items: evaluate on a deterministic subset of at most this many items per split. Local tasks
            only: an mteb task cannot be cut down before its data is downloaded.
    """
    if name in LOCAL_TASKS:
        return LOCAL_TASKS[name](data_dir=data_dir, max_items=max_items)  # type: ignore[return-value]
    if max_items is not None:
        raise ValueError(
            f"max_items only applies to st-pooling's local tasks ({', '.join(LOCAL_TASKS)}); "
            f"{name!r} is not one of them."
        )
    try:
        return mteb.get_task(name)
    except KeyError as error:
        mteb_says = error.args[0] if error.args else ""
        raise UnknownTaskError(
            f"Unknown task {name!r}: it is neither an st-pooling local task ({', '.join(LOCAL_TASKS)}) "
            f"nor an mteb task (mteb says: {mteb_says})"
        ) from None


def get_tasks(
    names: list[str], data_dir: str | Path | None = None, max_items: int | None = None
) -> list[AbsTask]:
    """:func:`get_task` for each name, in order."""
    return [get_task(name, data_dir=data_dir, max_items=max_items) for name in names]


def task_data(task_name: str, data_dir: str | Path | None = None, max_items: int | None = None) -> EvaluationData:
    """The dataclass behind a local task (after the same ``max_items`` subset the task evaluates on)."""
    if task_name not in LOCAL_TASKS:
        raise UnknownTaskError(f"{task_name!r} is not a local task; local tasks are {', '.join(LOCAL_TASKS)}")
    task = LOCAL_TASKS[task_name](data_dir=data_dir, max_items=max_items)
    return task.local_data()
