"""Index types and their defaults, chosen from corpus size.

All indexes use inner product over L2-normalised vectors, which is cosine similarity.

Defaults of ``index_type="auto"`` (``--type auto``; docs/indexing.md, "Choosing the index type" and "Defaults by
measurement"):
- fewer than 10,000 documents: ``flat`` (exact; nothing to tune; not measured on real vectors below 10k);
- 10,000 to 100,000: ``hnsw`` with M=32, efConstruction=100, efSearch=64. Measured on real MiniLM embeddings of the
  shared benchmark texts (benchmarks/bench_index_scale.py --vectors real, at 10k, 20k, 50k and 100k vectors, 1,000
  held-out queries): HNSW was the fastest index one query at a time at recall@10 >= 0.95 at every size (efSearch 32:
  0.963-0.974 at 0.14-0.34 ms; efSearch 64: 0.983-0.988 at 0.24-0.58 ms), flat took 16-30 ms a query on the shared
  2-CPU machine, and IVF-Flat needed nprobe 64 of 200-632 lists (0.48-1.8 ms). efSearch 64 rather than 32 keeps a
  margin over 0.95 for other data;
- 100,000 to 2,000,000: ``hnsw`` with M=32, efConstruction=100, efSearch=128 (real vectors at 100k: 0.994 at 0.83 ms,
  where efSearch 32 gave 0.974 and 64 0.988; kept at 128 because the class runs to 2M, unmeasured on real vectors
  above 100k, and recall falls as n grows);
- 2,000,000 or more: ``ivf`` with nlist = 4 * sqrt(n) (at least 39 training points per list) and nprobe=32;
  ``pq=True`` adds product quantisation, d/8 one-byte codes a vector by default (not measured on real embeddings).
An explicit ``index_type="hnsw"`` gets the same size-dependent efSearch. On the scale benchmark's well-clustered
synthetic vectors IVF-Flat at nprobe 1-2 was fastest at recall >= 0.95; on the real embeddings IVF-Flat at nprobe 32
reached only 0.92-0.94 (10k-100k vectors, nlist 2 sqrt(n)), so those synthetic settings are not adopted.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import faiss

INDEX_TYPES = ("flat", "hnsw", "ivf")
FLAT_BELOW = 10_000
IVF_FROM = 2_000_000
HNSW_DEFAULTS = {"M": 32, "ef_construction": 100, "ef_search": 128}
HNSW_SMALL_BELOW = 100_000  # below this many documents HNSW searches with HNSW_SMALL_EF_SEARCH (module doc)
HNSW_SMALL_EF_SEARCH = 64
IVF_DEFAULT_NPROBE = 32
PQ_BITS = 8
MIN_POINTS_PER_CENTROID = 39  # faiss warns below this many training points per centroid
TRAINING_POINTS_PER_CENTROID = 64
MAX_TRAINING_SAMPLE = 500_000


@dataclass(frozen=True)
class IndexSpec:
    """Which faiss index to build and with what parameters."""

    kind: str
    params: dict = field(default_factory=dict)
    chosen_by: str = "user"

    @property
    def factory_string(self) -> str:
        """The faiss ``index_factory`` description. Vectors are keyed by their position (rows are numbered in the
        order they were added; the document store maps rows to ids)."""
        if self.kind == "flat":
            return "Flat"
        if self.kind == "hnsw":
            return f"HNSW{self.params['M']},Flat"
        # np: no polysemous training (it reorders the codes for Hamming-filtered search, which st-pooling does not
        # use, and took 3/4 of an IVF-PQ build: 275 s instead of 76 s for 12k vectors on the busy 2-CPU machine)
        storage = f"PQ{self.params['pq_m']}x{PQ_BITS}np" if self.params.get("pq_m") else "Flat"
        refine = ",RFlat" if self.params.get("refine") else ""
        return f"IVF{self.params['nlist']},{storage}{refine}"

    @property
    def needs_training(self) -> bool:
        return self.kind == "ivf"

    def training_size(self, count: int) -> int:
        """How many vectors an IVF index is trained on: a uniform random sample of the corpus of this size."""
        if not self.needs_training:
            return 0
        wanted = TRAINING_POINTS_PER_CENTROID * self.params["nlist"]
        if self.params.get("pq_m"):
            wanted = max(wanted, TRAINING_POINTS_PER_CENTROID * 2**PQ_BITS)
        return min(count, max(wanted, 10_000), MAX_TRAINING_SAMPLE)

    def create(self, dimension: int) -> faiss.Index:
        """A new, empty faiss index for vectors of ``dimension``."""
        index = faiss.index_factory(dimension, self.factory_string, faiss.METRIC_INNER_PRODUCT)
        if self.kind == "hnsw":
            hnsw: Any = faiss.downcast_index(index)  # Any: faiss's annotations type every downcast as the base Index
            hnsw.hnsw.efConstruction = self.params["ef_construction"]
        apply_search_params(index, self)
        return index


def apply_search_params(index: faiss.Index, spec: IndexSpec, **overrides: int | None) -> None:
    """Set the search-time knobs (efSearch for HNSW; nprobe and the re-ranking factor for IVF) stored in ``spec``
    or given (None: the stored value)."""
    check_positive(overrides)
    concrete: Any = faiss.downcast_index(index)  # Any: faiss's annotations type every downcast as the base Index
    if spec.kind == "hnsw":
        concrete.hnsw.efSearch = int(overrides.get("ef_search") or spec.params["ef_search"])
    elif spec.kind == "ivf":
        if isinstance(concrete, faiss.IndexRefine):
            concrete.k_factor = float(overrides.get("refine") or spec.params.get("refine") or 1)
            concrete = faiss.downcast_index(concrete.base_index)
        concrete.nprobe = int(overrides.get("nprobe") or spec.params["nprobe"])


def check_positive(params: Mapping[str, object]) -> None:
    """Raise ValueError naming the first index parameter given that is not a positive integer (None is unset)."""
    for name, value in params.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1):
            raise ValueError(f"index parameter {name} must be a positive integer, got {value!r}")


def choose_index_spec(count: int, dimension: int, index_type: str = "auto", pq: bool = False,
                      **params: int) -> IndexSpec:
    """The index for ``count`` vectors of ``dimension``: ``index_type`` 'auto' picks by size (module doc);
    keyword ``params`` (M, ef_construction, ef_search, nlist, nprobe, pq_m) override the defaults."""
    if index_type not in ("auto", *INDEX_TYPES):
        raise ValueError(f"unknown index type {index_type!r}; use auto, {', '.join(INDEX_TYPES)}")
    check_positive(params)
    chosen_by = "user"
    if index_type == "auto":
        index_type = "flat" if count < FLAT_BELOW else "hnsw" if count < IVF_FROM else "ivf"
        chosen_by = f"default for {count:,} documents"
    if pq and index_type != "ivf":
        raise ValueError("product quantisation (pq) is only offered with the ivf index type; pass index_type='ivf'")
    if index_type == "flat":
        unknown = set(params)
        spec_params: dict = {}
    elif index_type == "hnsw":
        unknown = set(params) - set(HNSW_DEFAULTS)
        spec_params = {**hnsw_defaults(count), **params}
    else:
        unknown = set(params) - {"nlist", "nprobe", "pq_m", "refine"}
        spec_params = _ivf_params(count, dimension, pq, params)
    if unknown:
        raise ValueError(f"parameters {sorted(unknown)} do not apply to a {index_type} index")
    return IndexSpec(kind=index_type, params=spec_params, chosen_by=chosen_by)


def hnsw_defaults(count: int) -> dict:
    """HNSW's default parameters for ``count`` documents: efSearch HNSW_SMALL_EF_SEARCH below HNSW_SMALL_BELOW."""
    if count < HNSW_SMALL_BELOW:
        return {**HNSW_DEFAULTS, "ef_search": HNSW_SMALL_EF_SEARCH}
    return dict(HNSW_DEFAULTS)


def _ivf_params(count: int, dimension: int, pq: bool, params: dict) -> dict:
    largest_nlist = max(1, count // MIN_POINTS_PER_CENTROID)
    nlist = params.get("nlist") or min(largest_nlist, max(1, round(4 * math.sqrt(count))))
    if nlist > count:
        raise ValueError(f"nlist={nlist} is more than the {count} documents to train on; use at most {largest_nlist}")
    result = {"nlist": int(nlist), "nprobe": int(params.get("nprobe") or min(nlist, IVF_DEFAULT_NPROBE))}
    if pq or params.get("pq_m"):
        pq_m = int(params.get("pq_m") or _default_pq_m(dimension))
        if dimension % pq_m:
            raise ValueError(f"pq_m={pq_m} must divide the embedding dimension {dimension}")
        needed = MIN_POINTS_PER_CENTROID * 2**PQ_BITS
        if count < needed:
            raise ValueError(
                f"product quantisation needs at least {needed:,} documents to train its {2**PQ_BITS} codes per "
                f"sub-vector, the corpus has {count:,}; use ivf without pq, hnsw or flat"
            )
        result["pq_m"] = pq_m
    if params.get("refine"):
        if "pq_m" not in result:
            raise ValueError("refine (re-ranking PQ candidates by their exact vectors) applies to ivf with pq only")
        result["refine"] = int(params["refine"])
    return result


def _default_pq_m(dimension: int) -> int:
    """One byte per 8 dimensions (384 -> 48 bytes a vector, 32x smaller than float32)."""
    for pq_m in (dimension // 8, dimension // 4, dimension // 2, dimension):
        if pq_m and dimension % pq_m == 0:
            return pq_m
    return dimension
