"""The embedded default data sets: small, real, human-labelled data that gensim ships in
``gensim/test/test_data`` (so the default job needs no network and no extra download).

- Lee corpus: 50 news documents + a 50 x 50 matrix of human similarity judgments
  (Lee, Pincombe and Welsh 2005) -> :func:`load_lee_sts` and :func:`load_lee_retrieval`.
- Pang-Lee polarity: 200 movie-review sentences -> :func:`load_pang_lee_polarity`.
- mini 20 Newsgroups: 200 posts of alt.atheism and sci.space -> :func:`load_mini_newsgroups`.
"""

from __future__ import annotations

import copyreg
import io
import pickle
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from st_pooling.data.errors import DataFormatError, require_files
from st_pooling.data.newsgroups import news_text
from st_pooling.data.paths import gensim_test_data_dir
from st_pooling.data.splits import stratified_split
from st_pooling.data.text_files import parse_float, read_text, split_lines
from st_pooling.data.types import ClassificationData, ClusteringData, RetrievalData, STSData

LEE_DOCUMENTS = "lee.cor"
LEE_SIMILARITIES = "similarities0-1.txt"
PANG_LEE_FILE = "pang_lee_polarity.cor"
MINI_NEWSGROUPS_FILE = "mini_newsgroup"
PANG_LEE_LABELS = {"__label__neg": 0, "__label__pos": 1}

# Lee et al. asked raters for 1-5 judgments; the file stores the mean rating / 5 (so 0.2 .. 1.0).
# Relevance grades for LeeRetrieval: mean rating >= 2.5 -> gain 1, >= 3.5 -> 2, >= 4.5 -> 3.
LEE_RETRIEVAL_GRADES = ((0.9, 3), (0.7, 2), (0.5, 1))


def _data_folder(path: str | Path | None, files: list[str], dataset: str) -> Path:
    return require_files(gensim_test_data_dir() if path is None else path, files, dataset)


def load_lee_documents(path: str | Path | None = None) -> list[str]:
    """The 50 Lee news documents (latin-1, one document a line)."""
    file_path = _data_folder(path, [LEE_DOCUMENTS], "Lee corpus") / LEE_DOCUMENTS
    documents = [line.strip() for line in split_lines(read_text(file_path, ("latin-1",)))]
    for line_number, document in enumerate(documents, start=1):
        if not document:
            raise DataFormatError(file_path, "expected one document a line, found an empty line", line_number)
    return documents


def load_lee_similarities(path: str | Path | None = None, n_documents: int = 50) -> np.ndarray:
    """The symmetric ``n_documents`` x ``n_documents`` human similarity matrix (values in [0, 1]).

    The file holds the upper triangle (tab-separated rows, zeros below the diagonal, ones on it).
    """
    file_path = _data_folder(path, [LEE_SIMILARITIES], "Lee corpus") / LEE_SIMILARITIES
    rows = [line for line in split_lines(read_text(file_path, ("utf-8",))) if line.strip()]
    if len(rows) != n_documents:
        raise DataFormatError(file_path, f"expected {n_documents} rows (one per document), found {len(rows)}")
    matrix = np.zeros((n_documents, n_documents), dtype=np.float64)
    for i, row in enumerate(rows):
        cells = row.split("\t")
        if len(cells) != n_documents:
            raise DataFormatError(file_path, f"expected {n_documents} tab-separated values, found {len(cells)}", i + 1)
        for j, cell in enumerate(cells):
            value = parse_float(cell, file_path, i + 1, f"the similarity of documents {i + 1} and {j + 1}")
            if not 0.0 <= value <= 1.0:
                raise DataFormatError(file_path, f"similarity {value} in column {j + 1} is outside 0-1", i + 1)
            matrix[i, j] = value
    upper = np.triu(matrix, k=1)
    return upper + upper.T + np.eye(n_documents)


def load_lee_sts(path: str | Path | None = None) -> STSData:
    """Document-level STS: every unordered pair of the 50 Lee documents (1,225 pairs) with its human
    similarity score on [0, 1]. ``path`` defaults to gensim's test data folder."""
    documents = load_lee_documents(path)
    similarities = load_lee_similarities(path, n_documents=len(documents))
    first, second = np.triu_indices(len(documents), k=1)
    return STSData(
        [documents[i] for i in first],
        [documents[j] for j in second],
        [float(similarities[i, j]) for i, j in zip(first, second, strict=True)],
        min_score=0.0,
        max_score=1.0,
    )


def lee_relevance_gain(similarity: float) -> int:
    """The LeeRetrieval gain of a document pair from its human similarity (0 = not relevant)."""
    for threshold, gain in LEE_RETRIEVAL_GRADES:
        if similarity >= threshold:
            return gain
    return 0


def load_lee_retrieval(path: str | Path | None = None) -> RetrievalData:
    """Query-by-document retrieval over the 50 Lee documents, judged by humans.

    Each document is a query (id ``lee-NN``) against the corpus of all 50 documents, where its own
    copy (same id) is excluded from the candidates (``ignore_identical_ids``). A document is
    relevant when the human similarity of the pair is >= 0.5 (a mean rating of 2.5 of 5 or more),
    graded 1 / 2 / 3 at 0.5 / 0.7 / 0.9. The 2 documents with no pair at >= 0.5 are not queries:
    48 queries remain, with 6.0 relevant documents each on average (286 judgments).
    """
    documents = load_lee_documents(path)
    similarities = load_lee_similarities(path, n_documents=len(documents))
    ids = [f"lee-{index:02d}" for index in range(len(documents))]
    corpus = dict(zip(ids, documents, strict=True))
    qrels: dict[str, dict[str, int]] = {}
    for i, query_id in enumerate(ids):
        judged = {
            ids[j]: gain
            for j in range(len(documents))
            if j != i and (gain := lee_relevance_gain(float(similarities[i, j]))) > 0
        }
        if judged:
            qrels[query_id] = judged
    queries = {query_id: corpus[query_id] for query_id in ids if query_id in qrels}
    return RetrievalData(corpus=corpus, queries=queries, qrels=qrels, ignore_identical_ids=True)


def load_pang_lee_polarity(
    path: str | Path | None = None, seed: int = 0, test_fraction: float = 0.5
) -> ClassificationData:
    """200 Pang-Lee movie-review sentences (100 positive, 100 negative; 1 = positive, 0 = negative),
    split per class with a fixed ``seed``: by default 100 train and 100 test sentences."""
    file_path = _data_folder(path, [PANG_LEE_FILE], "Pang-Lee polarity") / PANG_LEE_FILE
    texts: list[str] = []
    labels: list[int] = []
    for line_number, line in enumerate(split_lines(read_text(file_path, ("latin-1",))), start=1):
        if not line.strip():
            continue
        tag, _, sentence = line.partition(" ")
        if tag not in PANG_LEE_LABELS:
            raise DataFormatError(
                file_path,
                f"expected the line to start with __label__pos or __label__neg, found {tag[:30]!r}",
                line_number,
            )
        if not sentence.strip():
            raise DataFormatError(file_path, "the label is followed by no sentence", line_number)
        texts.append(sentence.strip())
        labels.append(PANG_LEE_LABELS[tag])
    return stratified_split(texts, labels, test_fraction, seed)


def _numpy_reconstruct() -> Any:
    """numpy's array reconstructor, which moved from ``numpy.core`` to ``numpy._core`` in numpy 2."""
    try:
        from numpy._core.multiarray import _reconstruct  # noqa: PLC0415
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]  # noqa: PLC0415
    return _reconstruct


class _BunchUnpickler(pickle.Unpickler):
    """Reads gensim's Python-2 pickle of a scikit-learn ``Bunch`` and nothing else.

    Only the few callables that pickle needs are allowed: the Bunch class becomes a plain dict,
    and numpy's array reconstruction is permitted for the ``target`` and ``filenames`` arrays.
    Any other class in the stream is refused, so the file cannot run arbitrary code.
    """

    _ALLOWED: dict[tuple[str, str], Any] = {
        ("sklearn.datasets.base", "Bunch"): dict,
        ("sklearn.utils", "Bunch"): dict,
        ("sklearn.utils._bunch", "Bunch"): dict,
        ("copy_reg", "_reconstructor"): copyreg._reconstructor,
        ("copyreg", "_reconstructor"): copyreg._reconstructor,
        ("__builtin__", "dict"): dict,
        ("__builtin__", "object"): object,
        ("builtins", "dict"): dict,
        ("builtins", "object"): object,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct(),
        ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    }

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: only a scikit-learn Bunch of lists and numpy arrays is expected"
            ) from None


def load_mini_newsgroups(path: str | Path | None = None) -> ClusteringData:
    """200 posts of 20 Newsgroups (100 alt.atheism, 100 sci.space), the group as the gold cluster.

    gensim stores them as a zlib-compressed Python-2 pickle of a scikit-learn Bunch; it is read with
    a restricted unpickler (see ``_BunchUnpickler``). Texts are subject + body: the other headers,
    ``Newsgroups:`` among them, would give the label away.
    """
    file_path = _data_folder(path, [MINI_NEWSGROUPS_FILE], "mini 20 Newsgroups") / MINI_NEWSGROUPS_FILE
    try:
        bunch = _BunchUnpickler(io.BytesIO(zlib.decompress(file_path.read_bytes())), encoding="latin1").load()
    except (zlib.error, pickle.UnpicklingError, EOFError, ValueError, TypeError) as error:
        raise DataFormatError(file_path, f"not the expected zlib-compressed pickle of a Bunch ({error})") from None
    if not isinstance(bunch, dict) or not {"data", "target", "target_names"} <= set(bunch):
        raise DataFormatError(file_path, "expected a Bunch with the keys data, target and target_names")
    names = list(bunch["target_names"])
    targets = [int(target) for target in bunch["target"]]
    if len(bunch["data"]) != len(targets) or any(not 0 <= t < len(names) for t in targets):
        raise DataFormatError(file_path, "data and target do not match: one target index per post is expected")
    return ClusteringData([news_text(post) for post in bunch["data"]], [names[t] for t in targets])
