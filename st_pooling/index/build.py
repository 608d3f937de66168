"""Build an index from a corpus, add documents to one, train a shared quantiser for sharded builds, and merge
shards. Everything streams; builds save atomically, adds append in O(added documents)."""
from __future__ import annotations

import datetime as _dt
import hashlib
import os
import shutil
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from sentence_transformers import SentenceTransformer
from tqdm.auto import tqdm

from st_pooling.forward import encode_pool
from st_pooling.index.corpus import CorpusLike, Document, as_documents, scan_corpus
from st_pooling.index.documents import DOCUMENTS_DB, DocumentReader, DocumentTable
from st_pooling.index.errors import CorpusError, DamagedIndexError, IndexModelMismatchError, IndexStoreError
from st_pooling.index.fingerprint import model_fingerprint, module_classes
from st_pooling.index.metadata import check_query_model, new_metadata, spec_from_metadata
from st_pooling.index.prompts import effective_prompt, encode_normalized, normalize_rows
from st_pooling.index.sampling import VectorReservoir
from st_pooling.index.segments import (
    TRAINED_FILE,
    can_merge,
    each_segment,
    gpu_clustering_for,
    merge_segments,
    segment_name,
    write_index_file,
)
from st_pooling.index.spec import IndexSpec, choose_index_spec
from st_pooling.index.store import IndexFolder, OpenIndex, open_current, write_metadata

__all__ = ["BuildReport", "add_documents", "build_index", "compact_index", "encode_normalized", "merge_indexes",
           "normalize_rows", "train_index"]
ADD_CHUNK = 16_384  # vectors added to faiss at a time (the progress bar moves this often)


@dataclass(frozen=True)
class BuildReport:
    """What a build or add did, with its time split into encoding and indexing."""

    path: Path
    added: int
    total: int
    spec: IndexSpec
    encode_seconds: float
    index_seconds: float


def build_index(model: SentenceTransformer | None, corpus: CorpusLike, path: str | Path, *,
                model_name: str | None = None, index_type: str = "auto", pq: bool = False,
                index_params: dict | None = None, batch_size: int = 64, id_type: str = "auto",
                embeddings: np.ndarray | None = None, overwrite: bool = False, show_progress: bool = True,
                wait: bool = True, document_prompt: str | None = None, query_prompt: str | None = None,
                trained: str | Path | None = None, seed: int = 0,
                devices: Sequence[str] | None = None) -> BuildReport:
    """Embed ``corpus`` with ``model.encode_document`` and save a cosine-similarity faiss index at ``path``.

    ``corpus`` is a file path (jsonl/csv/tsv/txt), an ``{id: text}`` mapping or a list of Documents.
    ``index_type`` is auto/flat/hnsw/ivf (``pq`` for IVF-PQ); ``index_params`` overrides M, ef_construction,
    ef_search, nlist, nprobe, pq_m, refine. An IVF index is trained on a uniform random sample of the corpus
    (reservoir sampling over the encoded stream, ``seed``); the vectors wait in a scratch file meanwhile.
    ``embeddings`` (rows in corpus order) skips encoding, for vectors already computed with ``model``; with
    ``model=None`` the index holds bare vectors (search it with ``search_vectors``).
    ``document_prompt`` / ``query_prompt`` override the model's prompts (recorded; searches are checked against it).
    ``trained``: an index folder made by :func:`train_index` (or any IVF index) whose trained quantiser this build
    reuses, so that shards built in separate processes can be merged (:func:`merge_indexes`).
    ``id_type`` 'int64' refuses ids that are not canonical 64-bit integers (and so does every later add).
    The folder is replaced atomically: on any error the previous index there stays as it was.
    The write holds the folder's lock: another writer makes this wait, or with ``wait=False`` raise
    IndexStoreError naming its pid.
    ``devices`` (``["cuda:0", "cuda:1"]``, ``["cpu"] * N``) encodes in one process per device with
    sentence-transformers' multi-process pool (:func:`st_pooling.forward.encode_pool`).
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
    dimension = _dimension(model, embeddings)
    trained_index = None
    if trained is not None:
        trained_metadata, trained_index = read_trained(trained)
        spec = spec_from_metadata(trained_metadata)
    else:
        spec = choose_index_spec(summary.count, dimension, index_type, pq, **(index_params or {}))
    metadata = _metadata_for(model, model_name, dimension, spec, use_int_ids, document_prompt, query_prompt)
    if trained is not None:
        metadata["quantizer"] = trained_metadata["quantizer"]
        _check_same_source(trained_metadata, metadata, Path(trained))
    held = ExitStack()
    with folder.write_lock(wait, command=f"st-pooling index build into {folder.root}"):
        folder.check_writable(overwrite)  # again under the lock: another writer may have built meanwhile
        staging = folder.stage()
        try:
            table = DocumentTable(staging / DOCUMENTS_DB, 0, new=True)
            index = trained_index if trained_index is not None else spec.create(dimension)
            pool = held.enter_context(encode_pool(model, devices)) if devices and model is not None and \
                embeddings is None else None
            batches = _embedded_batches(model, documents, summary.count, batch_size, embeddings, show_progress,
                                        document_prompt, pool)
            filler = _IndexFiller(index, spec, table, staging, summary.count, seed, show_progress)
            timings = filler.fill(batches)
            table.commit()
            if spec.needs_training:
                (staging / TRAINED_FILE).write_bytes(filler.trained_bytes)
                metadata.setdefault("quantizer", {"sha256": hashlib.sha256(filler.trained_bytes).hexdigest(),
                                                  "training": filler.training})
            write_index_file(index, staging / segment_name(1))
            write_metadata(staging, {**metadata, "count": table.count,
                                     "segments": [{"file": segment_name(1), "rows": table.count}]})
            folder.commit(staging)
        except BaseException:
            folder.discard(staging)
            raise
        finally:
            held.close()  # the encode processes, if any
    return BuildReport(folder.root, summary.count, table.count, spec, *timings)


def add_documents(model: SentenceTransformer | None, corpus: CorpusLike, path: str | Path, *, batch_size: int = 64,
                  embeddings: np.ndarray | None = None, show_progress: bool = True, wait: bool = True,
                  document_prompt: str | None = None) -> BuildReport:
    """Embed ``corpus`` and append it to the index at ``path``: O(added documents), not O(index).

    The new rows go into the document store in one transaction and the new vectors into a new segment file; only
    replacing metadata.json makes them live, so a failure at any step leaves the index as it was. Refuses a model
    (or document prompt) other than the index's, ids already in the index, and (for an index built with
    int64 ids) ids that are not int64. The whole write holds the folder's lock, so concurrent adds take turns and
    none is lost (``wait=False``: raise IndexStoreError instead of waiting)."""
    folder = IndexFolder(path)
    folder.require_current()  # refuse a folder without an index before creating a lock file in it
    documents = as_documents(corpus)
    with folder.write_lock(wait, command=f"st-pooling index add to {folder.root}"):
        current = open_current(folder.root, mmap=True)
        try:
            return _append(model, documents, current, folder, batch_size, embeddings, show_progress, document_prompt)
        finally:
            current.documents.close()


def _append(model: SentenceTransformer | None, documents: Iterable[Document], current: OpenIndex, folder: IndexFolder,
            batch_size: int, embeddings: np.ndarray | None, show_progress: bool, document_prompt: str | None
            ) -> BuildReport:
    metadata = current.metadata
    if model is not None:
        check_query_model(metadata, model, folder.root)
        prompt = effective_prompt(model, "document", document_prompt)
        if prompt != metadata["prompts"].get("document", ""):
            raise IndexModelMismatchError(
                f"the index at {folder.root} embeds documents with the prompt {metadata['prompts']['document']!r}, "
                f"these would get {prompt!r}; pass document_prompt={metadata['prompts']['document']!r} "
                "(--document-prompt) or rebuild the index")
    elif embeddings is None:
        raise ValueError("give a model to embed the documents, or their embeddings")
    elif metadata["model"]["fingerprint"] is not None:
        raise IndexModelMismatchError(f"the index at {folder.root} was built with model "
                                      f"{metadata['model']['name']!r}; pass that model to add documents to it")
    summary = scan_corpus(documents, known_ids=_KnownIds(current.documents))
    if metadata["id_type"] == "int64" and not summary.ids_are_int64:
        raise CorpusError(f"the index at {folder.root} keys documents by 64-bit integer ids, but the new "
                          "documents include ids that are not plain integers; rebuild with id_type='string' "
                          "to mix them")
    spec = spec_from_metadata(metadata)
    dimension = metadata["model"]["dimension"]
    if embeddings is not None and embeddings.shape[1] != dimension:
        raise ValueError(f"the embeddings have dimension {embeddings.shape[1]}, the index {dimension}")
    index = read_trained(current.root)[1] if spec.needs_training else spec.create(dimension)
    numbers = [int(s["file"][len("segment-"):-len(".faiss")]) for s in metadata["segments"]]
    segment_path = current.version / segment_name(max(numbers, default=0) + 1)
    table = DocumentTable(current.version / DOCUMENTS_DB, metadata["count"], new=False)
    try:
        batches = _embedded_batches(model, documents, summary.count, batch_size, embeddings, show_progress,
                                    document_prompt)
        timings = _IndexFiller(index, spec, table, None, summary.count, 0, show_progress).fill(batches)
        write_index_file(index, segment_path)
        table.commit()
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        segments = [*metadata["segments"], {"file": segment_path.name, "rows": summary.count}]
        folder.commit_metadata(current.version, {**metadata, "count": table.count, "segments": segments,
                                                 "updated": now})
    except BaseException:
        table.rollback()
        segment_path.unlink(missing_ok=True)  # not listed, so never live; removed now rather than by the next writer
        raise
    return BuildReport(folder.root, summary.count, table.count, spec, *timings)


class _KnownIds:
    """``id in known`` asks the document store (O(log n)) instead of loading every id."""

    def __init__(self, documents: DocumentReader) -> None:
        self._documents = documents

    def __contains__(self, document_id: object) -> bool:
        return bool(self._documents.known_ids([str(document_id)]))


# ----------------------------------------------------------------------------- sharded builds

def train_index(model: SentenceTransformer | None, corpus: CorpusLike, path: str | Path, *,
                model_name: str | None = None, pq: bool = False, index_params: dict | None = None,
                batch_size: int = 64, embeddings: np.ndarray | None = None, overwrite: bool = False,
                show_progress: bool = True, document_prompt: str | None = None, query_prompt: str | None = None,
                seed: int = 0, count: int | None = None) -> BuildReport:
    """Train an IVF (``pq``: IVF-PQ) quantiser on a uniform random sample of ``corpus`` and save it at ``path`` as
    an empty index, for shards built in separate processes with ``build_index(..., trained=path)``.

    Only the sampled documents are encoded (chosen uniformly with ``seed`` after counting the corpus). The index
    parameters are chosen for ``count`` documents (default: the corpus's), the size of the merged index."""
    folder = IndexFolder(path)
    folder.check_writable(overwrite)
    documents = as_documents(corpus)
    summary = scan_corpus(documents)
    dimension = _dimension(model, embeddings)
    spec = choose_index_spec(count or summary.count, dimension, "ivf", pq, **(index_params or {}))
    size = spec.training_size(count or summary.count)
    positions = np.sort(np.random.default_rng(seed).choice(summary.count, min(size, summary.count), replace=False))
    began = time.perf_counter()
    if embeddings is not None:
        sample = normalize_rows(embeddings[positions])
    else:
        wanted = set(positions.tolist())
        texts = [d.encoding_text for n, d in enumerate(documents) if n in wanted]
        assert model is not None  # _dimension refused neither a model nor embeddings
        sample = encode_normalized(model, texts, batch_size, prompt=document_prompt)
    encode_seconds = time.perf_counter() - began
    index = spec.create(dimension)
    began = time.perf_counter()
    _train(index, spec, sample, show_progress)
    trained_bytes = faiss.serialize_index(index).tobytes()
    training = {"method": "uniform sample of the corpus", "sample": len(sample), "of": summary.count, "seed": seed}
    metadata = _metadata_for(model, model_name, dimension, spec, False, document_prompt, query_prompt)
    metadata["quantizer"] = {"sha256": hashlib.sha256(trained_bytes).hexdigest(), "training": training}
    with folder.write_lock(True, command=f"st-pooling index train into {folder.root}"):
        folder.check_writable(overwrite)
        staging = folder.stage()
        try:
            DocumentTable(staging / DOCUMENTS_DB, 0, new=True).commit()
            (staging / TRAINED_FILE).write_bytes(trained_bytes)
            write_metadata(staging, {**metadata, "count": 0, "segments": []})
            folder.commit(staging)
        except BaseException:
            folder.discard(staging)
            raise
    return BuildReport(folder.root, 0, 0, spec, encode_seconds, time.perf_counter() - began)


def read_trained(path: str | Path) -> tuple[dict, faiss.Index]:
    """The metadata and the trained, empty faiss index of the IVF index (or trained quantiser) at ``path``."""
    current = open_current(path, mmap=True)
    current.documents.close()
    trained_file = current.version / TRAINED_FILE
    if not trained_file.is_file() or "quantizer" not in current.metadata:
        raise IndexStoreError(f"{current.root} holds no trained quantiser ({TRAINED_FILE}); give a folder made by "
                              "`st-pooling index train` or an ivf index")
    try:
        index = faiss.read_index(str(trained_file))
    except RuntimeError:
        raise DamagedIndexError(current.root, trained_file, "cannot be read by faiss (truncated or corrupt)",
                                current.metadata["model"]["name"]) from None
    if hashlib.sha256(trained_file.read_bytes()).hexdigest() != current.metadata["quantizer"]["sha256"]:
        raise DamagedIndexError(current.root, trained_file, "is not the quantiser the metadata records (changed)",
                                current.metadata["model"]["name"])
    return current.metadata, index


def merge_indexes(shards: list[str | Path], path: str | Path, *, overwrite: bool = False, wait: bool = True,
                  show_progress: bool = True) -> BuildReport:
    """One index at ``path`` holding every shard's documents, in shard order, as if built at once.

    The shards must share model, prompts, index type and parameters and (IVF) the trained quantiser
    (``build_index(..., trained=...)``); ids must be unique across shards. Flat and IVF shards are merged into one
    faiss index with faiss's ``merge_from`` (search results equal a one-shot build's, ids and scores); HNSW shards
    are kept as segments and searched together (faiss ``IndexShards``). Merging holds the merged index in memory."""
    if not shards:
        raise ValueError("give at least one shard to merge")
    folder = IndexFolder(path)
    folder.check_writable(overwrite)
    opened = [open_current(shard, mmap=False) for shard in shards]
    try:
        first = opened[0].metadata
        for shard in opened[1:]:
            _check_same_source(first, shard.metadata, shard.root)
        with folder.write_lock(wait, command=f"st-pooling index merge into {folder.root}"):
            folder.check_writable(overwrite)
            return _write_merged(folder, opened, show_progress, {"merged_from": [str(s.root) for s in opened]})
    finally:
        for shard in opened:
            shard.documents.close()


def compact_index(path: str | Path, *, wait: bool = True, show_progress: bool = True) -> BuildReport:
    """Rewrite the index at ``path`` with its segments (one per add) merged into one, as a new version (flat and
    IVF; HNSW segments cannot be merged by faiss and are left as they are). Searches afterwards equal a one-shot
    build's. Costs O(index): run it now and then, not after every add."""
    folder = IndexFolder(path)
    folder.require_current()
    with folder.write_lock(wait, command=f"st-pooling index compact {folder.root}"):
        current = open_current(folder.root, mmap=False)
        try:
            return _write_merged(folder, [current], show_progress, {})
        finally:
            current.documents.close()


def _write_merged(folder: IndexFolder, opened: list[OpenIndex], show_progress: bool, extra: dict) -> BuildReport:
    metadata = opened[0].metadata
    spec = spec_from_metadata(metadata)
    began = time.perf_counter()
    staging = folder.stage()
    try:
        table = DocumentTable(staging / DOCUMENTS_DB, 0, new=True)
        for shard in opened:
            table.append_table(shard.documents.path, shard.metadata["count"])
        table.commit()
        segments = [segment for shard in opened for segment in each_segment(shard.index) if segment.ntotal]
        listed: list[dict] = []
        if can_merge(spec) and segments:
            with tqdm(total=1, desc=f"merging {len(segments)} segments", disable=not show_progress):
                merged = merge_segments(segments)
            write_index_file(merged, staging / segment_name(1))
            listed.append({"file": segment_name(1), "rows": int(merged.ntotal)})
        else:
            for number, segment in enumerate(segments, start=1):
                write_index_file(segment, staging / segment_name(number))
                listed.append({"file": segment_name(number), "rows": int(segment.ntotal)})
        if spec.needs_training:
            shutil.copyfile(opened[0].version / TRAINED_FILE, staging / TRAINED_FILE)
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        write_metadata(staging, {**metadata, **extra, "count": table.count, "segments": listed, "updated": now})
        folder.commit(staging)
    except BaseException:
        folder.discard(staging)
        raise
    return BuildReport(folder.root, table.count, table.count, spec, 0.0, time.perf_counter() - began)


def _check_same_source(expected: dict, actual: dict, where: Path) -> None:
    """Shards (and a build from a trained quantiser) must agree on what decides their vectors."""
    for key, label in ((("model", "fingerprint"), "model fingerprint"), (("model", "dimension"), "dimension"),
                       (("prompts",), "prompts"), (("index", "factory"), "faiss index"),
                       (("index", "params"), "index parameters"), (("quantizer", "sha256"), "trained quantiser")):
        want: Any = expected
        got: Any = actual
        for part in key:
            want, got = (want or {}).get(part), (got or {}).get(part)
        if want != got:
            raise IndexModelMismatchError(f"{where} differs in its {label} ({got!r}, expected {want!r}); shards must "
                                          "be built with the same model, prompts and trained quantiser")


# ----------------------------------------------------------------------------- encoding and filling

def _dimension(model: SentenceTransformer | None, embeddings: np.ndarray | None) -> int:
    if model is not None:
        dimension = model.get_embedding_dimension()
        if dimension is None:
            raise ValueError("the model does not report its embedding dimension (get_embedding_dimension() is None)")
        return int(dimension)
    if embeddings is None:
        raise ValueError("give a model to embed the corpus, or its embeddings (model=None builds a vectors-only index)")
    return int(np.asarray(embeddings).shape[1])


def _metadata_for(model: SentenceTransformer | None, model_name: str | None, dimension: int, spec: IndexSpec,
                  use_int_ids: bool, document_prompt: str | None, query_prompt: str | None) -> dict:
    id_type = "int64" if use_int_ids else "string"
    if model is None:
        prompts = {"document": document_prompt or "", "query": query_prompt or ""}
        return new_metadata(model_name or "precomputed vectors", None, [], dimension, spec, id_type, prompts)
    prompts = {"document": effective_prompt(model, "document", document_prompt),
               "query": effective_prompt(model, "query", query_prompt)}
    return new_metadata(model_name or _model_label(model), model_fingerprint(model), module_classes(model), dimension,
                        spec, id_type, prompts, getattr(model, "max_seq_length", None))


def _model_label(model: SentenceTransformer) -> str:
    """A readable name for the metadata: the Hub id or the folder the weights came from."""
    card = getattr(model, "model_card_data", None)
    if card is not None and card.base_model:
        return card.base_model
    config = getattr(getattr(model[0], "auto_model", None), "config", None)
    return getattr(config, "name_or_path", "") or "unnamed SentenceTransformer"


def _embedded_batches(model: SentenceTransformer | None, documents: Iterable[Document], count: int, batch_size: int,
                      embeddings: np.ndarray | None, show_progress: bool, document_prompt: str | None,
                      pool: tuple[Any, Any] | None = None) -> Iterator[tuple[list[Document], np.ndarray, float]]:
    """Yield (documents, unit vectors, seconds spent encoding) a batch at a time; ``pool``: ``(pool_model, pool)``
    of :func:`st_pooling.forward.encode_pool`, encoding in its processes."""
    if embeddings is not None and len(embeddings) != count:
        raise ValueError(f"got {len(embeddings)} precomputed embeddings for {count} documents; give one per document")
    if embeddings is not None and model is not None and embeddings.shape[1] != model.get_embedding_dimension():
        raise ValueError(f"precomputed embeddings have dimension {embeddings.shape[1]}, the model "
                         f"{model.get_embedding_dimension()}")
    progress = tqdm(total=count, desc="encoding" if embeddings is None else "reading vectors", unit="doc",
                    disable=not show_progress)
    batch: list[Document] = []
    start = 0
    chunk = batch_size * 16 if embeddings is None else ADD_CHUNK

    def flush() -> tuple[list[Document], np.ndarray, float]:
        began = time.perf_counter()
        if embeddings is None and pool is not None:
            vectors = normalize_rows(pool[0].encode_document([d.encoding_text for d in batch], batch_size=batch_size,
                                                             convert_to_numpy=True, show_progress_bar=False,
                                                             prompt=document_prompt, pool=pool[1]))
        elif embeddings is None:
            assert model is not None  # _dimension refused neither a model nor embeddings
            vectors = encode_normalized(model, [d.encoding_text for d in batch], batch_size, prompt=document_prompt)
        else:
            vectors = normalize_rows(embeddings[start:start + len(batch)])
        progress.update(len(batch))
        return batch, vectors, time.perf_counter() - began

    with progress:
        for document in documents:
            batch.append(document)
            if len(batch) == chunk:
                yield flush()
                start += len(batch)
                batch = []
        if batch:
            yield flush()


def _train(index: faiss.Index, spec: IndexSpec, sample: np.ndarray, show_progress: bool) -> None:
    gpu_clustering_for(index)
    with tqdm(total=1, desc=f"training {spec.factory_string} on {len(sample):,} sampled vectors",
              disable=not show_progress, bar_format="{desc}: {elapsed}"):
        index.train(sample)


class _IndexFiller:
    """Adds encoded batches to the faiss index and their documents to the store. An untrained (IVF) index is first
    trained on a reservoir sample of the whole stream, so the vectors wait in a scratch file in ``scratch``."""

    def __init__(self, index: faiss.Index, spec: IndexSpec, table: DocumentTable, scratch: Path | None, count: int,
                 seed: int, show_progress: bool) -> None:
        self.index, self.spec, self.table, self.count = index, spec, table, count
        self.scratch, self.seed, self.show_progress = scratch, seed, show_progress
        self.trained_bytes = b""
        self.training: dict = {}

    def fill(self, batches: Iterator[tuple[list[Document], np.ndarray, float]]) -> tuple[float, float]:
        """Returns (encode seconds, index seconds)."""
        if self.index.is_trained:
            return self._fill_trained(batches)
        if self.scratch is None:
            raise IndexStoreError("the index to add to is not trained")
        reservoir = VectorReservoir(self.spec.training_size(self.count), self.index.d, self.seed)
        scratch = self.scratch / ".vectors.f32"
        encode_seconds = index_seconds = 0.0
        with scratch.open("wb") as handle:
            for documents, vectors, seconds in batches:
                encode_seconds += seconds
                self.table.append(documents)
                began = time.perf_counter()
                reservoir.offer(vectors)
                handle.write(vectors.tobytes())
                index_seconds += time.perf_counter() - began
        began = time.perf_counter()
        _train(self.index, self.spec, reservoir.sample(), self.show_progress)
        self.trained_bytes = faiss.serialize_index(self.index).tobytes()
        self.training = {"method": "reservoir sample of the stream", "sample": len(reservoir.sample()),
                         "of": reservoir.seen, "seed": self.seed}
        stored = np.memmap(scratch, dtype=np.float32, mode="r", shape=(reservoir.seen, self.index.d))
        with self._adding() as progress:
            for start in range(0, len(stored), ADD_CHUNK):
                part = np.ascontiguousarray(stored[start:start + ADD_CHUNK])
                self.index.add(part)
                progress.update(len(part))
        del stored
        os.unlink(scratch)
        return encode_seconds, index_seconds + time.perf_counter() - began

    def _fill_trained(self, batches: Iterator[tuple[list[Document], np.ndarray, float]]) -> tuple[float, float]:
        encode_seconds = index_seconds = 0.0
        with self._adding() as progress:
            for documents, vectors, seconds in batches:
                encode_seconds += seconds
                began = time.perf_counter()
                self.table.append(documents)
                for start in range(0, len(vectors), ADD_CHUNK):
                    self.index.add(vectors[start:start + ADD_CHUNK])
                    progress.update(min(ADD_CHUNK, len(vectors) - start))
                index_seconds += time.perf_counter() - began
        return encode_seconds, index_seconds

    def _adding(self) -> tqdm:
        return tqdm(total=self.count, desc=f"adding to {self.spec.factory_string}", unit="vec",
                    disable=not self.show_progress)
