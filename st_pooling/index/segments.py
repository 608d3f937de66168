"""The vectors of an index: one or more immutable faiss files ("segments"), each holding a run of rows.

A build writes one segment; each ``add`` writes one more holding only the added vectors, so an add costs O(added).
Searching several segments is faiss's ``IndexShards`` with successive ids: a hit at position p of a segment is row
(rows before that segment) + p. IVF segments share the trained quantiser (``trained.faiss``), so they can be merged
into one with faiss's ``merge_from`` (``compact``), which gives exactly the index a one-shot build gives.

Segments open memory-mapped by default: faiss maps the file instead of reading it, so a search process holds little
more than the coarse quantiser (IVF: ``IO_FLAG_MMAP`` turns the inverted lists into faiss's on-disk inverted lists,
so only the probed lists are paged in; flat, HNSW and the exact vectors an IVF-PQ index re-ranks with:
``IO_FLAG_MMAP_IFC`` maps the stored vectors). The two flags cannot be combined (faiss: "mmap only supported for File
objects"). A memory-mapped IVF-PQ index with re-ranking keeps its PQ codes in memory and reads the few exact vectors
it re-ranks with ``pread`` (:class:`DiskReranker`), not through the mapping: on a kernel that caches files in large
folios (Linux 6.x on ext4; 8 MB read-ahead on the development machine) one fault on a mapped file maps a whole
folio, up to megabytes, so random reads through a mapping soon count the whole file in the process's RSS.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from st_pooling.index.spec import IndexSpec, apply_search_params

TRAINED_FILE = "trained.faiss"
logger = logging.getLogger(__name__)
_FAISS: Any = faiss  # faiss's annotations miss some of its functions (fvec_inner_products_by_idx)


def segment_name(number: int) -> str:
    return f"segment-{number:06d}.faiss"


def write_index_file(index: faiss.Index, path: Path) -> None:
    """Write ``index`` to ``path`` through a temporary name and an ``os.replace``, synced to disk."""
    temporary = path.with_name(f".{path.name}.tmp")
    faiss.write_index(faiss.index_gpu_to_cpu(index) if _on_gpu(index) else index, str(temporary))
    with temporary.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def mmap_flags(spec: IndexSpec) -> int:
    """faiss read flags that map ``spec``'s big arrays instead of reading them."""
    if spec.kind == "ivf" and not spec.params.get("refine"):
        return faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY  # the inverted lists
    return faiss.IO_FLAG_MMAP_IFC  # the stored vectors (flat, HNSW storage, IVF-PQ's re-ranking vectors)


def read_index_file(path: Path, spec: IndexSpec, mmap: bool) -> faiss.Index:
    """Read one faiss file, memory-mapped if ``mmap``; RuntimeError when faiss cannot read it.
    Mapped IVF lists are read on demand: faiss's prefetch threads (32 started per search) cost more than they save
    when the file is in the page cache (measured: 1.5 ms instead of 0.85 ms a single query, 30k vectors)."""
    index = faiss.read_index(str(path), mmap_flags(spec) if mmap else 0)
    ivf = faiss.try_extract_index_ivf(index) if mmap and spec.kind == "ivf" else None
    lists = faiss.downcast_InvertedLists(ivf.invlists) if ivf is not None and ivf.invlists is not None else None
    if isinstance(lists, faiss.OnDiskInvertedLists):
        lists.prefetch_nthread = 0
    return index


def combine(segments: list[faiss.Index], dimension: int) -> faiss.Index:
    """One searchable index over ``segments`` in row order (the segment itself when there is one)."""
    if len(segments) == 1:
        return segments[0]
    # not threaded; successive ids = row numbers. faiss's annotations miss this (d, threaded, successive_ids) overload
    shards = faiss.IndexShards(dimension, False, True)  # type: ignore[call-arg]
    shards.metric_type = faiss.METRIC_INNER_PRODUCT
    for segment in segments:
        shards.add_shard(segment)  # faiss's wrapper keeps a reference to each segment
    return shards


def each_segment(index: faiss.Index) -> list[faiss.Index]:
    if isinstance(index, faiss.IndexShards):
        shards: Any = index  # Any: faiss's annotations miss IndexShards.at() and count()
        return [faiss.downcast_index(shards.at(number)) for number in range(shards.count())]
    return [index]


def set_search_params(index: faiss.Index, spec: IndexSpec, **overrides: int | None) -> None:
    for segment in each_segment(index):
        apply_search_params(segment, spec, **overrides)


def merge_segments(segments: list[faiss.Index]) -> faiss.Index:
    """One index holding every segment's vectors in order (faiss ``merge_from``; flat and IVF segments that share a
    trained quantiser). The first segment is extended in place and returned."""
    merged = segments[0]
    for other in segments[1:]:
        target: Any = faiss.downcast_index(merged)  # Any: faiss types every downcast as the base Index
        source: Any = faiss.downcast_index(other)
        if isinstance(target, faiss.IndexRefine):  # IVF-PQ re-ranked by exact vectors: merge both parts
            faiss.downcast_index(target.base_index).merge_from(faiss.downcast_index(source.base_index),
                                                              target.base_index.ntotal)
            faiss.downcast_index(target.refine_index).merge_from(faiss.downcast_index(source.refine_index), 0)
            target.ntotal = target.base_index.ntotal
        else:  # an IVF index stores ids (positions): shift the other's; a flat index numbers rows itself
            target.merge_from(source, target.ntotal if isinstance(target, faiss.IndexIVF) else 0)
    return merged


def can_merge(spec: IndexSpec) -> bool:
    """HNSW graphs cannot be merged by faiss; their segments are searched side by side."""
    return spec.kind in ("flat", "ivf")


def reconstruct_rows(index: faiss.Index, rows: np.ndarray) -> np.ndarray:
    """The stored vectors of ``rows`` (flat and HNSW indexes keep them exactly)."""
    offset = 0
    wanted = np.asarray(rows, dtype=np.int64)
    out = np.zeros((len(wanted), index.d), dtype=np.float32)
    for segment in each_segment(index):
        inside = (wanted >= offset) & (wanted < offset + segment.ntotal)
        for position in np.flatnonzero(inside).tolist():
            out[position] = segment.reconstruct(int(wanted[position] - offset))
        offset += segment.ntotal
    return out


# ----------------------------------------------------------------------------- re-ranking from disk

class DiskReranker:
    """Search IVF-PQ-with-re-ranking segments (faiss ``IndexRefineFlat``) without holding or mapping their exact
    vectors: each segment's IVF-PQ part proposes ``k_factor * k`` candidates, whose exact vectors are read with
    ``pread`` from the segment file and scored; the best ``k`` over all segments win. Gives the scores and rows of
    faiss's own ``IndexRefineFlat.search`` (up to float rounding); the pages read stay in the OS page cache, which
    the kernel can drop, not in the process."""

    QUERY_CHUNK = 256
    # exact vectors read per step (3 MB at 384-d), queries chunked to fit: with 8192 a mapped 100k-vector search process
    # peaked at 95 MB, with 2048 at 69 MB, its imports holding 48 MB (benchmarks/bench_index_scale.py, docs/indexing.md)
    VECTORS_AT_ONCE = 2048

    def __init__(self, parts: list[tuple[Any, Any, int]]) -> None:
        self.parts = parts  # (IndexRefineFlat segment, open file, byte offset of its exact vectors)

    @classmethod
    def open(cls, segments: list[faiss.Index], paths: list[Path]) -> DiskReranker | None:
        """A re-ranker over ``segments`` (read from ``paths``), or None when one of them is not an
        ``IndexRefineFlat`` whose file has faiss's layout (then faiss re-ranks through the mapping)."""
        parts = []
        for segment, path in zip(segments, paths):
            refine: Any = faiss.downcast_index(segment)
            offset = _refine_vector_offset(path, refine) if isinstance(refine, faiss.IndexRefine) else None
            if offset is None:
                return None
            parts.append((refine, path.open("rb", buffering=0), offset))
        return cls(parts) if parts and len(segments) == len(paths) else None

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        rows = np.full((len(queries), k), -1, dtype=np.int64)
        largest = max(max(k, int(k * refine.k_factor)) for refine, _, _ in self.parts)
        step = max(1, min(self.QUERY_CHUNK, self.VECTORS_AT_ONCE // largest))
        for start in range(0, len(queries), step):
            chunk = np.ascontiguousarray(queries[start:start + step])
            found_scores, found_rows, first_row = [], [], 0
            for refine, handle, offset in self.parts:
                base = faiss.downcast_index(refine.base_index)
                wanted = min(base.ntotal, max(k, int(k * refine.k_factor)))
                candidates = base.search(chunk, wanted)[1]
                valid = candidates >= 0
                unique, inverse = np.unique(candidates[valid], return_inverse=True)
                vectors = _pread_rows(handle, offset, unique, refine.d)
                positions = np.full(candidates.shape, -1, dtype=np.int64)
                positions[valid] = inverse.reshape(-1)
                exact = np.empty(candidates.shape, dtype=np.float32)  # faiss's own kernel: the scores IndexRefine gives
                threads = faiss.omp_get_max_threads()
                faiss.omp_set_num_threads(1)  # a few dot products: starting OpenMP threads costs more (15 ms, busy CPUs)
                try:
                    _FAISS.fvec_inner_products_by_idx(faiss.swig_ptr(exact), faiss.swig_ptr(chunk),
                                                     faiss.swig_ptr(vectors), faiss.swig_ptr(positions), refine.d,
                                                     len(chunk), wanted)
                finally:
                    faiss.omp_set_num_threads(threads)
                exact[~valid] = -np.inf
                found_scores.append(exact)
                found_rows.append(np.where(valid, candidates + first_row, -1))
                first_row += refine.ntotal
            all_scores, all_rows = np.hstack(found_scores), np.hstack(found_rows)
            best = np.argsort(-all_scores, axis=1, kind="stable")[:, :k]
            taken = min(k, best.shape[1])
            scores[start:start + len(chunk), :taken] = np.take_along_axis(all_scores, best, axis=1)
            rows[start:start + len(chunk), :taken] = np.take_along_axis(all_rows, best, axis=1)
        rows[~np.isfinite(scores)] = -1
        return scores, rows


def _refine_vector_offset(path: Path, refine: Any) -> int | None:
    """Where the exact vectors of an ``IndexRefineFlat`` file start: faiss writes the IVF-PQ part, then the
    ``IndexFlat`` (header, the vector count n*d as a 64-bit integer, the n*d float32s), then ``k_factor`` (a
    float). None unless the count sits where that layout puts it."""
    vector_bytes = refine.ntotal * refine.d * 4
    start = path.stat().st_size - 4 - vector_bytes
    if start < 8:
        return None
    with path.open("rb") as handle:
        handle.seek(start - 8)
        return start if int.from_bytes(handle.read(8), "little") == refine.ntotal * refine.d else None


def _pread_rows(handle: Any, offset: int, rows: np.ndarray, dimension: int) -> np.ndarray:
    """The float32 vectors of sorted, distinct ``rows``, read with one ``pread`` per run of consecutive rows."""
    size = dimension * 4
    out = np.empty((len(rows), dimension), dtype=np.float32)
    if not len(rows):
        return out
    buffer = out.data.cast("B")
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    for first, stop in zip(np.r_[0, breaks].tolist(), np.r_[breaks, len(rows)].tolist()):
        wanted = (stop - first) * size
        if os.preadv(handle.fileno(), [buffer[first * size:stop * size]], offset + int(rows[first]) * size) != wanted:
            raise RuntimeError(f"{handle.name} is shorter than its metadata says (truncated?)")
    return out


# ----------------------------------------------------------------------------- GPU, when present

def gpu_count() -> int:
    """GPUs faiss can use: 0 with faiss-cpu (no ``get_num_gpus``) or without a GPU."""
    get_num_gpus = getattr(faiss, "get_num_gpus", None)
    return int(get_num_gpus()) if get_num_gpus is not None and hasattr(faiss, "StandardGpuResources") else 0


_GPU_RESOURCES: list = []


def to_gpu_if_available(index: faiss.Index) -> faiss.Index:
    """``index`` copied to GPU 0 when faiss-gpu is installed and a GPU is present (one flat or IVF segment; faiss
    has no GPU HNSW, IndexRefine or IndexShards of CPU segments); else, or when faiss refuses the copy (logged),
    ``index`` unchanged. Not exercised here: the development machine has neither a GPU nor faiss-gpu."""
    if gpu_count() == 0 or isinstance(faiss.downcast_index(index),
                                      (faiss.IndexHNSW, faiss.IndexShards, faiss.IndexRefine)):
        return index
    if not _GPU_RESOURCES:
        _GPU_RESOURCES.append(faiss.StandardGpuResources())
    try:
        return faiss.index_cpu_to_gpu(_GPU_RESOURCES[0], 0, index)
    except RuntimeError as error:  # e.g. a PQ size the GPU kernels do not offer
        logger.warning("searching on the CPU: faiss could not copy the index to the GPU (%s)", error)
        return index


def gpu_clustering_for(index: faiss.Index) -> None:
    """Let an IVF index train its k-means on the GPU when one is available (``clustering_index``)."""
    ivf = faiss.try_extract_index_ivf(index)
    if gpu_count() and ivf is not None:
        if not _GPU_RESOURCES:
            _GPU_RESOURCES.append(faiss.StandardGpuResources())
        ivf.clustering_index = faiss.index_cpu_to_gpu(_GPU_RESOURCES[0], 0, faiss.IndexFlatL2(index.d))


def _on_gpu(index: faiss.Index) -> bool:
    return gpu_count() > 0 and "Gpu" in type(faiss.downcast_index(index)).__name__
