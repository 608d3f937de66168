"""Build an index from a corpus, or add documents to one; both stream and save atomically."""
from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
from sentence_transformers import SentenceTransformer
from tqdm.auto import tqdm

from st_pooling.index.corpus import CorpusLike, Document, as_documents, scan_corpus
from st_pooling.index.errors import CorpusError
from st_pooling.index.fingerprint import model_fingerprint, module_classes
from st_pooling.index.metadata import check_query_model, new_metadata, spec_from_metadata
from st_pooling.index.spec import IndexSpec, choose_index_spec
from st_pooling.index.store import INDEX_FILE, DocumentWriter, IndexFolder, open_current, write_metadata


@dataclass(frozen=True)
class BuildReport:
    """What a build or add did, with its time split into encoding and indexing."""

    path: Path
    added: int
    total: int
    spec: IndexSpec
    encode_seconds: float
    index_seconds: float


def build_index(model: SentenceTransformer, corpus: CorpusLike, path: str | Path, *, model_name: str | None = None,
                index_type: str = "auto", pq: bool = False, index_params: dict | None = None,
                batch_size: int = 64, id_type: str = "auto", embeddings: np.ndarray | None = None,
                overwrite: bool = False, show_progress: bool = True, wait: bool = True) -> BuildReport:
    """Embed ``corpus`` with ``model`` and save a cosine-similarity faiss index at ``path``.

    ``corpus`` is a file path (jsonl/csv/tsv/txt), an ``{id: text}`` mapping or a list of Documents.
    ``index_type`` is auto/flat/hnsw/ivf (``pq`` for IVF-PQ); ``index_params`` overrides M,
    ef_construction, ef_search, nlist, nprobe, pq_m. ``id_type`` 'auto' stores ids as faiss int64
    ids when every id is a canonical int64, else as a string table ('string' forces the table).
    ``embeddings`` (rows in corpus order) skips encoding, for vectors already computed with ``model``.
    The folder is replaced atomically: on any error the previous index there stays as it was.
    The write holds the folder's lock: another writer makes this wait, or with ``wait=False`` raise
    IndexStoreError naming its pid.
    """
    folder = IndexFolder(path)
    folder.check_writable(overwrite)  # refuse early, before touching the folder
    documents = as_documents(corpus)
    summary = scan_corpus(documents)
    if id_type not in ("auto", "int64", "string"):
        raise ValueError(f"id_type must be auto, int64 or string, got {id_type!r}")
    if id_type == "int64" and not summary.ids_are_int64:
        raise CorpusError("id_type='int64' needs every id to be a plain 64-bit integer such as '42' (not '042')")
    use_int_ids = summary.ids_are_int64 and id_type != "string"
    dimension = model.get_embedding_dimension()
    spec = choose_index_spec(summary.count, dimension, index_type, pq, **(index_params or {}))
    metadata = new_metadata(model_name or _model_label(model), model_fingerprint(model), module_classes(model),
                            dimension, spec, "int64" if use_int_ids else "string")
    with folder.write_lock(wait):
        folder.check_writable(overwrite)  # again under the lock: another writer may have built meanwhile
        staging = folder.stage()
        try:
            writer = DocumentWriter(staging)
            index = spec.create(dimension)
            batches = _embedded_batches(model, documents, summary.count, batch_size, embeddings, show_progress)
            timings = _fill_index(index, spec, batches, writer, use_int_ids, summary.count)
            writer.close()
            faiss.write_index(index, str(staging / INDEX_FILE))
            write_metadata(staging, {**metadata, "count": writer.count})
            folder.commit(staging)
        except BaseException:
            folder.discard(staging)
            raise
    return BuildReport(folder.root, summary.count, writer.count, spec, *timings)


def add_documents(model: SentenceTransformer, corpus: CorpusLike, path: str | Path, *, batch_size: int = 64,
                  embeddings: np.ndarray | None = None, show_progress: bool = True, wait: bool = True) -> BuildReport:
    """Embed ``corpus`` and add it to the index at ``path`` as a new atomically saved version.

    Refuses a model other than the index's, ids already in the index, and (for an index keyed
    by int64 ids) ids that are not int64. The whole read-modify-write holds the folder's lock, so
    concurrent adds take turns and none is lost (``wait=False``: raise IndexStoreError instead of waiting)."""
    folder = IndexFolder(path)
    folder.require_current()  # refuse a folder without an index before creating a lock file in it
    documents = as_documents(corpus)
    with folder.write_lock(wait):
        current = open_current(folder.root)
        metadata = current.metadata
        check_query_model(metadata, model, folder.root)
        summary = scan_corpus(documents, known_ids=set(current.documents.iter_ids()))
        use_int_ids = metadata["id_type"] == "int64"
        if use_int_ids and not summary.ids_are_int64:
            raise CorpusError(f"the index at {folder.root} keys documents by 64-bit integer ids, but the new "
                              "documents include ids that are not plain integers; rebuild with id_type='string' "
                              "to mix them")
        spec = spec_from_metadata(metadata)
        staging = folder.stage()
        try:
            writer = DocumentWriter(staging, existing=current.documents)
            index = current.index
            batches = _embedded_batches(model, documents, summary.count, batch_size, embeddings, show_progress)
            timings = _fill_index(index, spec, batches, writer, use_int_ids, summary.count)
            writer.close()
            faiss.write_index(index, str(staging / INDEX_FILE))
            now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
            write_metadata(staging, {**metadata, "count": writer.count, "updated": now})
            folder.commit(staging)
        except BaseException:
            folder.discard(staging)
            raise
    return BuildReport(folder.root, summary.count, writer.count, spec, *timings)


def encode_normalized(model: SentenceTransformer, texts: list[str], batch_size: int = 64) -> np.ndarray:
    """Unit-length float32 embeddings, so inner product is cosine similarity. Shape (len(texts), dim)."""
    vectors = model.encode(texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)
    return normalize_rows(vectors)


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """A float32 C-contiguous copy of ``vectors`` with each row scaled to unit length."""
    vectors = np.array(vectors, dtype=np.float32, order="C", copy=True)
    if vectors.ndim != 2:
        raise ValueError(f"expected a 2-d array of embeddings, got shape {vectors.shape}")
    if not np.isfinite(vectors).all():
        raise ValueError("embeddings contain NaN or infinity; check the model and the input texts")
    faiss.normalize_L2(vectors)
    return vectors


def _model_label(model: SentenceTransformer) -> str:
    """A readable name for the metadata: the Hub id or the folder the weights came from."""
    card = getattr(model, "model_card_data", None)
    if card is not None and card.base_model:
        return card.base_model
    config = getattr(getattr(model[0], "auto_model", None), "config", None)
    return getattr(config, "name_or_path", "") or "unnamed SentenceTransformer"


def _embedded_batches(model: SentenceTransformer, documents: Iterable[Document], count: int, batch_size: int,
                      embeddings: np.ndarray | None, show_progress: bool) -> Iterator[tuple[list[Document], np.ndarray, float]]:
    """Yield (documents, unit vectors, seconds spent encoding) a batch at a time."""
    if embeddings is not None and len(embeddings) != count:
        raise ValueError(f"got {len(embeddings)} precomputed embeddings for {count} documents; give one per document")
    if embeddings is not None and embeddings.shape[1] != model.get_embedding_dimension():
        raise ValueError(f"precomputed embeddings have dimension {embeddings.shape[1]}, the model "
                         f"{model.get_embedding_dimension()}")
    progress = tqdm(total=count, desc="encoding", unit="doc", disable=not show_progress)
    batch: list[Document] = []
    start = 0

    def flush() -> tuple[list[Document], np.ndarray, float]:
        began = time.perf_counter()
        if embeddings is None:
            vectors = encode_normalized(model, [d.encoding_text for d in batch], batch_size)
        else:
            vectors = normalize_rows(embeddings[start:start + len(batch)])
        progress.update(len(batch))
        return batch, vectors, time.perf_counter() - began

    with progress:
        for document in documents:
            batch.append(document)
            if len(batch) == batch_size * 16:
                yield flush()
                start += len(batch)
                batch = []
        if batch:
            yield flush()


def _fill_index(index: faiss.Index, spec: IndexSpec, batches: Iterator[tuple[list[Document], np.ndarray, float]],
                writer: DocumentWriter, use_int_ids: bool, count: int) -> tuple[float, float]:
    """Add every batch to ``index`` and ``writer``; an untrained IVF index first buffers its training
    sample from the start of the stream. Returns (encode seconds, index seconds)."""
    encode_seconds = index_seconds = 0.0
    pending: list[tuple[list[Document], np.ndarray]] = []
    train_size = 0 if index.is_trained else spec.training_size(count)

    def train_then_add_pending() -> float:
        began = time.perf_counter()
        if not index.is_trained:
            index.train(np.concatenate([vectors for _, vectors in pending]))
        for documents, vectors in pending:
            ids = np.array([int(d.id) for d in documents], dtype=np.int64) if use_int_ids \
                else np.arange(writer.count, writer.count + len(documents), dtype=np.int64)
            index.add_with_ids(vectors, ids)
            writer.append(documents, ids)
        pending.clear()
        return time.perf_counter() - began

    for documents, vectors, seconds in batches:
        encode_seconds += seconds
        pending.append((documents, vectors))
        if index.is_trained or sum(len(d) for d, _ in pending) >= train_size:
            index_seconds += train_then_add_pending()
    if pending:  # fewer vectors than the training size: train on what there is
        index_seconds += train_then_add_pending()
    return encode_seconds, index_seconds
