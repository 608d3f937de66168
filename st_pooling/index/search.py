"""Load a saved index and search it with the model that built it."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
from sentence_transformers import SentenceTransformer

from st_pooling.index.build import encode_normalized, normalize_rows
from st_pooling.index.metadata import check_query_model, spec_from_metadata
from st_pooling.index.spec import apply_search_params
from st_pooling.index.store import DocumentReader, open_current


@dataclass(frozen=True)
class SearchHit:
    """One result: the user's document id, its cosine similarity to the query, and its text."""

    id: str
    score: float
    text: str
    title: str = ""


class SearchIndex:
    """A loaded index. ``SearchIndex.load(path, model)`` refuses a model that did not build it."""

    def __init__(self, path: Path, metadata: dict, index: faiss.Index, documents: DocumentReader,
                 model: SentenceTransformer | None) -> None:
        self.path = path
        self.metadata = metadata
        self.spec = spec_from_metadata(metadata)
        self.faiss_index = index
        self.documents = documents
        self.model = model
        apply_search_params(index, self.spec)
        # faiss's IndexIDMap2.search adds ~10 ms of OpenMP overhead per call on a busy machine (measured),
        # so search the wrapped index directly and translate its positions to ids with the stored map.
        id_map = faiss.downcast_index(index)
        self._inner = id_map.index
        self._ids_by_position = faiss.vector_to_array(id_map.id_map).astype(np.int64)

    @classmethod
    def load(cls, path: str | Path, model: SentenceTransformer | None) -> SearchIndex:
        """Load the live version at ``path``. With ``model``, check it matches the index (fingerprint and
        dimension) and use it to embed queries; with None, only ``search_vectors`` is available."""
        current = open_current(path)  # a missing, truncated or corrupt file raises DamagedIndexError
        if model is not None:
            check_query_model(current.metadata, model, current.root)
        return cls(current.root, current.metadata, current.index, current.documents, model)

    def __len__(self) -> int:
        return int(self.faiss_index.ntotal)

    def __repr__(self) -> str:
        return (f"SearchIndex({str(self.path)!r}, type={self.spec.kind}, count={len(self)}, "
                f"model={self.metadata['model']['name']!r})")

    def set_search_params(self, *, ef_search: int | None = None, nprobe: int | None = None) -> None:
        """Trade speed for recall: efSearch (HNSW) or nprobe (IVF); not saved."""
        apply_search_params(self.faiss_index, self.spec, ef_search=ef_search, nprobe=nprobe)

    def search_vectors(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Raw search: (scores, faiss ids), each (n_queries, k); missing slots have id -1 and score -inf."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        queries = normalize_rows(queries)
        expected = self.metadata["model"]["dimension"]
        if queries.shape[1] != expected:
            raise ValueError(f"query vectors have dimension {queries.shape[1]}, the index {expected}")
        scores, positions = self._inner.search(queries, k)
        ids = np.where(positions >= 0, self._ids_by_position[np.maximum(positions, 0)], -1)
        scores[ids < 0] = -np.inf
        return scores, ids

    def search(self, queries: str | Sequence[str], k: int = 10, batch_size: int = 64) -> list[list[SearchHit]]:
        """Top-``k`` documents for each query (a string gives a one-element list), best first."""
        if self.model is None:
            raise ValueError("this index was loaded without a model; load it with the model that built it "
                             "to search by text, or use search_vectors")
        texts = [queries] if isinstance(queries, str) else list(queries)
        for number, text in enumerate(texts, start=1):
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"query {number} is empty ({text!r}); give a query with some text to search for")
        scores, ids = self.search_vectors(encode_normalized(self.model, texts, batch_size), k)
        return [self._hits(row_scores, row_ids) for row_scores, row_ids in zip(scores, ids)]

    def _hits(self, scores: np.ndarray, faiss_ids: np.ndarray) -> list[SearchHit]:
        found = faiss_ids >= 0
        documents = self.documents.read_rows(self.documents.rows_for(faiss_ids[found]))
        return [SearchHit(id=d.id, score=float(s), text=d.text, title=d.title)
                for d, s in zip(documents, scores[found].tolist())]

    def ids_for(self, faiss_ids: np.ndarray) -> list[str]:
        """The user's document ids for faiss ids (from ``search_vectors``); -1 gives ''."""
        flat = np.asarray(faiss_ids).reshape(-1)
        found = flat >= 0
        ids = iter(self.documents.ids_of_rows(self.documents.rows_for(flat[found])))
        return [next(ids) if hit else "" for hit in found.tolist()]


def load_index(path: str | Path, model: SentenceTransformer | None) -> SearchIndex:
    """Shorthand for ``SearchIndex.load``."""
    return SearchIndex.load(path, model)
