"""Evaluation data: plain dataclasses and loaders for real benchmark files.

Every loader takes the folder that holds a data set's files (any folder a user points to) and
returns one of the four dataclasses of :mod:`st_pooling.data.types`. The embedded default loaders
read the small human-labelled sets that gensim ships and need no path.
"""

from st_pooling.data.classification_loaders import (
    load_banking77_classification,
    load_banking77_clustering,
    load_mr,
    load_sst2,
)
from st_pooling.data.embedded import (
    load_lee_retrieval,
    load_lee_sts,
    load_mini_newsgroups,
    load_pang_lee_polarity,
)
from st_pooling.data.errors import DataFormatError
from st_pooling.data.ir_collections import load_cisi, load_cranfield
from st_pooling.data.newsgroups import load_20newsgroups_classification, load_20newsgroups_clustering
from st_pooling.data.paths import gensim_test_data_dir, shared_data_dir
from st_pooling.data.sts_loaders import load_sick, load_stsbenchmark
from st_pooling.data.types import ClassificationData, ClusteringData, EvaluationData, RetrievalData, STSData

__all__ = [
    "ClassificationData",
    "ClusteringData",
    "DataFormatError",
    "EvaluationData",
    "RetrievalData",
    "STSData",
    "gensim_test_data_dir",
    "load_20newsgroups_classification",
    "load_20newsgroups_clustering",
    "load_banking77_classification",
    "load_banking77_clustering",
    "load_cisi",
    "load_cranfield",
    "load_lee_retrieval",
    "load_lee_sts",
    "load_mini_newsgroups",
    "load_mr",
    "load_pang_lee_polarity",
    "load_sick",
    "load_sst2",
    "load_stsbenchmark",
    "shared_data_dir",
]
