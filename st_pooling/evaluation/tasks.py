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

import mteb
from mteb.abstasks import AbsTask

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
from st_pooling.evaluation.local_tasks import (
    LocalClassificationTask,
    LocalClusteringTask,
    LocalRetrievalTask,
    LocalSTSTask,
    LocalTask,
    disk_folder,
    local_task_metadata,
)

_GENSIM = "https://github.com/piskvorky/gensim/tree/develop/gensim/test/test_data"


class LeeSTS(LocalSTSTask):
    metadata = local_task_metadata(
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
    metadata = local_task_metadata(
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
    metadata = local_task_metadata(
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
    metadata = local_task_metadata(
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
    metadata = local_task_metadata(
        "LocalSTSBenchmark",
        "STS",
        "STS Benchmark test split (1,379 pairs, scores 0-5) read from sts-test.csv.",
        "https://ixa2.si.ehu.eus/stswiki/index.php/STSbenchmark",
        domains=["News", "Written", "Blog"],
        license="cc-by-sa-4.0",
        date=("2012-01-01", "2017-12-31"),
    )

    def read_data(self, folder: Path | None) -> STSData:
        return load_stsbenchmark(disk_folder(folder), split="test")


class LocalSICK(LocalSTSTask):
    metadata = local_task_metadata(
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
        return load_sick(disk_folder(folder), split="test")


class LocalSST2(LocalClassificationTask):
    data_folder = "sst2"
    metadata = local_task_metadata(
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
        return load_sst2(disk_folder(folder))


class LocalMR(LocalClassificationTask):
    data_folder = "mr"
    metadata = local_task_metadata(
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
        return load_mr(disk_folder(folder))


class LocalBanking77Classification(LocalClassificationTask):
    data_folder = "banking77"
    metadata = local_task_metadata(
        "LocalBanking77Classification",
        "Classification",
        "Banking77: 77 intents of online-banking queries (10,003 train / 3,080 test).",
        "https://arxiv.org/abs/2003.04807",
        domains=["Written", "Financial"],
        license="cc-by-nc-4.0",
        date=("2019-01-01", "2019-12-31"),
    )

    def read_data(self, folder: Path | None) -> ClassificationData:
        return load_banking77_classification(disk_folder(folder))


class LocalBanking77Clustering(LocalClusteringTask):
    data_folder = "banking77"
    metadata = local_task_metadata(
        "LocalBanking77Clustering",
        "Clustering",
        "Banking77 test queries (3,080) clustered by their 77 intents.",
        "https://arxiv.org/abs/2003.04807",
        domains=["Written", "Financial"],
        license="cc-by-nc-4.0",
        date=("2019-01-01", "2019-12-31"),
    )

    def read_data(self, folder: Path | None) -> ClusteringData:
        return load_banking77_clustering(disk_folder(folder))


class Local20NewsgroupsClassification(LocalClassificationTask):
    data_folder = "20newsgroups"
    metadata = local_task_metadata(
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
        return load_20newsgroups_classification(disk_folder(folder))


class Local20NewsgroupsClustering(LocalClusteringTask):
    data_folder = "20newsgroups"
    metadata = local_task_metadata(
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
        return load_20newsgroups_clustering(disk_folder(folder), subject_only=True)


class LocalCranfield(LocalRetrievalTask):
    data_folder = "cranfield"
    metadata = local_task_metadata(
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
        return load_cranfield(disk_folder(folder))


class LocalCISI(LocalRetrievalTask):
    data_folder = "cisi"
    metadata = local_task_metadata(
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
        return load_cisi(disk_folder(folder))


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
