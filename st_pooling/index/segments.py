"""The vectors of an index: one or more immutable faiss files ("segments"), each holding a run of rows.

A build writes one segment; each ``add`` writes one more holding only the added vectors, so an add costs O(added).
Searching several segments is faiss's ``IndexShards`` with successive ids: a hit at position p of a segment is row
(rows before that segment) + p. IVF segments share the trained quantiser (``trained.faiss``), so they can be merged
into one with faiss's ``merge_from`` (``compact``), which gives exactly the index a one-shot build gives.

Segments open memory-mapped by default: faiss maps the file instead of reading it, so a search process holds little
more than the coarse quantiser (IVF: ``IO_FLAG_MMAP`` maps the inverted lists; flat, HNSW and the exact vectors an
IVF-PQ index re-ranks with: ``IO_FLAG_MMAP_IFC`` maps the stored vectors). The two flags cannot be combined.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from st_pooling.index.spec import IndexSpec, apply_search_params

TRAINED_FILE = "trained.faiss"


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
    """Read one faiss file, memory-mapped if ``mmap``; RuntimeError when faiss cannot read it."""
    return faiss.read_index(str(path), mmap_flags(spec) if mmap else 0)


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


# ----------------------------------------------------------------------------- GPU, when present

def gpu_count() -> int:
    """GPUs faiss can use: 0 with faiss-cpu (no ``get_num_gpus``) or without a GPU."""
    get_num_gpus = getattr(faiss, "get_num_gpus", None)
    return int(get_num_gpus()) if get_num_gpus is not None and hasattr(faiss, "StandardGpuResources") else 0


_GPU_RESOURCES: list = []


def to_gpu_if_available(index: faiss.Index) -> faiss.Index:
    """``index`` copied to GPU 0 when faiss-gpu is installed and a GPU is present (flat and IVF indexes; faiss has no
    GPU HNSW); else ``index`` unchanged. Not exercised here: the development machine has neither."""
    if gpu_count() == 0 or isinstance(faiss.downcast_index(index), (faiss.IndexHNSW, faiss.IndexShards)):
        return index
    if not _GPU_RESOURCES:
        _GPU_RESOURCES.append(faiss.StandardGpuResources())
    return faiss.index_cpu_to_gpu(_GPU_RESOURCES[0], 0, index)


def gpu_clustering_for(index: faiss.Index) -> None:
    """Let an IVF index train its k-means on the GPU when one is available (``clustering_index``)."""
    ivf = faiss.try_extract_index_ivf(index)
    if gpu_count() and ivf is not None:
        if not _GPU_RESOURCES:
            _GPU_RESOURCES.append(faiss.StandardGpuResources())
        ivf.clustering_index = faiss.index_cpu_to_gpu(_GPU_RESOURCES[0], 0, faiss.IndexFlatL2(index.d))


def _on_gpu(index: faiss.Index) -> bool:
    return gpu_count() > 0 and "Gpu" in type(faiss.downcast_index(index)).__name__
