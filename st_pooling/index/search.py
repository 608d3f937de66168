"""Load a saved index and search it with the model that built it."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np

from st_pooling.index.documents import DocumentReader
from st_pooling.index.metadata import check_query_model, check_query_prompt, spec_from_metadata
from st_pooling.index.prompts import effective_prompt, encode_normalized, normalize_rows
from st_pooling.index.segments import (
    DiskReranker,
    each_segment,
    reconstruct_rows,
    set_search_params,
    to_gpu_if_available,
)
from st_pooling.index.store import open_current

if TYPE_CHECKING:  # only annotations: a search process that searches by vector imports faiss and numpy, not torch
    from sentence_transformers import SentenceTransformer


@dataclass(frozen=True)
class SearchHit:
    """One result: the user's document id, its cosine similarity to the query, and its text."""

    id: str
    score: float
    text: str
    title: str = ""


class SearchIndex:
    """A loaded index. ``SearchIndex.load(path, model)`` refuses a model that did not build it, and a query prompt
    other than the one the index was built for."""

    def __init__(self, path: Path, metadata: dict, index: faiss.Index, documents: DocumentReader,
                 model: SentenceTransformer | None, query_prompt: str | None = None) -> None:
        self.path = path
        self.metadata = metadata
        self.spec = spec_from_metadata(metadata)
        self.faiss_index = index
        self.documents = documents
        self.model = model
        self.query_prompt = query_prompt
        self.reranker: DiskReranker | None = None  # IVF-PQ re-ranked from disk (mmap): see segments.DiskReranker
        set_search_params(index, self.spec)

    @classmethod
    def load(cls, path: str | Path, model: SentenceTransformer | None, *, mmap: bool = True,
             query_prompt: str | None = None, use_gpu: bool = True) -> SearchIndex:
        """Load the live version at ``path``. With ``model``, check it matches the index (fingerprint, dimension, and
        the query prompt: ``query_prompt`` or the one ``model.encode_query`` applies) and use it to embed queries;
        with None, only ``search_vectors`` is available. ``mmap`` (default) maps the index files instead of reading
        them, so the process holds little beyond the IVF coarse quantiser; ``mmap=False`` reads them into memory
        (and, with faiss-gpu and a GPU, ``use_gpu`` moves a flat or IVF index onto it)."""
        current = open_current(path, mmap=mmap)  # a missing, truncated or corrupt file raises DamagedIndexError
        if model is not None:
            check_query_model(current.metadata, model, current.root)
            check_query_prompt(current.metadata, effective_prompt(model, "query", query_prompt), current.root)
        index = current.index if mmap or not use_gpu else to_gpu_if_available(current.index)
        loaded = cls(current.root, current.metadata, index, current.documents, model, query_prompt)
        if mmap and loaded.spec.params.get("refine"):
            paths = [current.version / segment["file"] for segment in current.metadata["segments"]]
            loaded.reranker = DiskReranker.open(each_segment(index), paths)
        return loaded

    def __len__(self) -> int:
        return int(self.faiss_index.ntotal)

    def __repr__(self) -> str:
        return (f"SearchIndex({str(self.path)!r}, type={self.spec.kind}, count={len(self)}, "
                f"model={self.metadata['model']['name']!r})")

    def set_search_params(self, *, ef_search: int | None = None, nprobe: int | None = None,
                          refine: int | None = None) -> None:
        """Trade speed for recall: efSearch (HNSW), nprobe (IVF), refine (IVF-PQ: re-rank refine * k candidates by
        their exact vectors); not saved."""
        set_search_params(self.faiss_index, self.spec, ef_search=ef_search, nprobe=nprobe, refine=refine)

    def search_vectors(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Raw search: (scores, rows), each (n_queries, k); rows number the documents in the order they were added
        (``ids_for`` gives their ids); missing slots have row -1 and score -inf."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        queries = normalize_rows(queries)
        expected = self.metadata["model"]["dimension"]
        if queries.shape[1] != expected:
            raise ValueError(f"query vectors have dimension {queries.shape[1]}, the index {expected}")
        if self.reranker is not None:
            scores, rows = self.reranker.search(queries, k)
        else:
            scores, rows = self.faiss_index.search(queries, k)
        scores[rows < 0] = -np.inf
        return scores, rows

    def search(self, queries: str | Sequence[str], k: int = 10, batch_size: int = 64) -> list[list[SearchHit]]:
        """Top-``k`` documents for each query (a string gives a one-element list), best first."""
        if self.model is None:
            raise ValueError("this index was loaded without a model; load it with the model that built it "
                             "to search by text, or use search_vectors")
        texts = [queries] if isinstance(queries, str) else list(queries)
        for number, text in enumerate(texts, start=1):
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"query {number} is empty ({text!r}); give a query with some text to search for")
        vectors = encode_normalized(self.model, texts, batch_size, role="query", prompt=self.query_prompt)
        scores, ids = self.search_vectors(vectors, k)
        return [self._hits(row_scores, row_ids) for row_scores, row_ids in zip(scores, ids)]

    def _hits(self, scores: np.ndarray, rows: np.ndarray) -> list[SearchHit]:
        found = rows >= 0
        documents = self.documents.read_rows(rows[found])
        return [SearchHit(id=d.id, score=float(s), text=d.text, title=d.title)
                for d, s in zip(documents, scores[found].tolist())]

    def ids_for(self, rows: np.ndarray) -> list[str]:
        """The user's document ids for rows (from ``search_vectors``); -1 gives ''."""
        flat = np.asarray(rows).reshape(-1)
        found = flat >= 0
        ids = iter(self.documents.ids_of_rows(flat[found]))
        return [next(ids) if hit else "" for hit in found.tolist()]

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        """The stored (unit) vectors of ``rows``, from a flat or HNSW index."""
        return reconstruct_rows(self.faiss_index, rows)


def load_index(path: str | Path, model: SentenceTransformer | None, **options: Any) -> SearchIndex:
    """Shorthand for ``SearchIndex.load``."""
    return SearchIndex.load(path, model, **options)
