"""Indexes at 100k and 1M vectors: recall@10 against exact search, queries/s and peak RSS of a search process, for
st-pooling's flat, HNSW and IVF-PQ (in memory and memory-mapped) indexes beside sentence-transformers'
``semantic_search_faiss`` (the anchor: its exact ``IndexFlatIP`` and its ``IndexHNSWFlat``, M=16).

Vectors: 384-d synthetic "topics" (1,000 Gaussian centres, each vector = centre + noise, unit-normalised); queries
are drawn the same way with another seed. Every index is built once in this process; every search runs in its own
child process (``--child``), which loads the index and the queries, sweeps the search-time knob (efSearch, nprobe x
refine), and reports queries/s (one batch of all queries), recall@10 and its peak RSS (VmHWM). The child imports st-pooling (torch included): its RSS right after the imports is reported as the
baseline, and peak RSS both in total and above that baseline.

    nice -n 10 .venv/bin/python benchmarks/bench_index_scale.py [--sizes 100000 1000000] [--queries 1000]

Results go to benchmarks/results/index_scale.json; a table is printed with ratios against the anchor.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "index_scale.json"
K = 10
DIM = 384
TOPICS = 1000
TARGET_RECALL = 0.95


def synthetic(n: int, seed: int) -> np.ndarray:
    """``n`` unit vectors around TOPICS fixed centres (the centres do not depend on ``seed``)."""
    import faiss

    centres = np.random.default_rng(12345).standard_normal((TOPICS, DIM)).astype(np.float32)
    rng = np.random.default_rng(seed)
    out = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        labels = rng.integers(0, TOPICS, stop - start)
        out[start:stop] = centres[labels] + 0.9 * rng.standard_normal((stop - start, DIM), dtype=np.float32)
    faiss.normalize_L2(out)
    return out


def rss_kb(field: str = "VmRSS") -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


# ----------------------------------------------------------------------------- child: one search process

def child(spec: dict) -> None:
    baseline_kb = rss_kb()
    import faiss

    queries = np.load(spec["queries"])
    truth = np.load(spec["truth"])
    if spec["kind"] == "anchor":
        baseline_kb = rss_kb()
        from sentence_transformers.util.quantization import semantic_search_faiss

        index = faiss.read_index(spec["path"])
        if spec.get("ef_search"):
            faiss.downcast_index(index).hnsw.efSearch = spec["ef_search"]

        def search(batch: np.ndarray) -> np.ndarray:
            results, _, _ = semantic_search_faiss(batch, corpus_index=index, top_k=K, rescore=False, output_index=True)
            return np.array([[hit["corpus_id"] for hit in row] + [-1] * (K - len(row)) for row in results])

        settings = [{}]
        set_params = None
    else:
        from st_pooling.index import SearchIndex

        baseline_kb = rss_kb()
        index = SearchIndex.load(spec["path"], None, mmap=spec["mmap"])

        def search(batch: np.ndarray) -> np.ndarray:
            return index.search_vectors(batch, K)[1]

        settings = spec["settings"]
        set_params = index.set_search_params
    loaded_kb = rss_kb()
    rows = []
    for setting in settings:
        if set_params is not None:
            set_params(**setting)
        search(queries[:10])  # warm up
        began = time.perf_counter()
        found = search(queries)
        seconds = time.perf_counter() - began
        recall = float(np.mean([len(set(a.tolist()) & set(b.tolist())) for a, b in zip(found, truth)])) / K
        rows.append({"setting": setting, "recall_at_10": recall, "queries_per_s": len(queries) / seconds})
    good = [r for r in rows if r["recall_at_10"] >= TARGET_RECALL]
    chosen = max(good, key=lambda r: r["queries_per_s"]) if good else max(rows, key=lambda r: r["recall_at_10"])
    if set_params is not None:
        set_params(**chosen["setting"])
    began = time.perf_counter()
    for query in queries[:100]:
        search(query[None, :])
    single_ms = 1000 * (time.perf_counter() - began) / 100
    print(json.dumps({"sweep": rows, "chosen": chosen, "single_query_ms": single_ms, "baseline_rss_mb": baseline_kb / 1024,
                      "rss_after_load_mb": loaded_kb / 1024, "rss_anon_end_mb": rss_kb("RssAnon") / 1024,
                      "rss_file_end_mb": rss_kb("RssFile") / 1024,
                      "peak_rss_mb": rss_kb("VmHWM") / 1024}))


def run_child_measured(spec: dict) -> dict:
    """Run one child; its peak RSS is its own VmHWM (``ru_maxrss`` of a child on Linux starts from the parent's
    RSS at fork, which here holds the corpus, so it would overstate every child)."""
    process = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True)
    if process.returncode != 0:
        raise RuntimeError(f"child {spec['name']} failed:\n{process.stderr[-3000:]}")
    result = json.loads(process.stdout.strip().splitlines()[-1])
    result["peak_rss_above_baseline_mb"] = result["peak_rss_mb"] - result["baseline_rss_mb"]
    return result


# ----------------------------------------------------------------------------- parent: build, then measure

def bench_size(n: int, n_queries: int, work: Path, log) -> list[dict]:
    import faiss
    from sentence_transformers.util.quantization import semantic_search_faiss

    from st_pooling.index import Document, build_index

    began = time.perf_counter()
    vectors_file = work / f"vectors_{n}.npy"
    np.save(vectors_file, synthetic(n, seed=1))
    vectors = np.load(vectors_file, mmap_mode="r")
    queries = synthetic(n_queries, seed=2)
    np.save(work / "queries.npy", queries)
    exact = faiss.IndexFlatIP(DIM)
    for start in range(0, n, 200_000):
        exact.add(np.ascontiguousarray(vectors[start:start + 200_000]))
    np.save(work / "truth.npy", exact.search(queries, K)[1])
    del exact
    log(f"{n:,}: data and exact top-10 in {time.perf_counter() - began:.0f} s")
    documents = [Document(id=f"d{i}", text=f"document {i}") for i in range(n)]
    common = {"queries": str(work / "queries.npy"), "truth": str(work / "truth.npy")}
    configs = []

    def ours(name: str, settings: list[dict], mmap_variants=(False, True), **build) -> None:
        began = time.perf_counter()
        report = build_index(None, documents, work / f"{name}_{n}", embeddings=vectors, show_progress=False,
                             overwrite=True, **build)
        build_s = time.perf_counter() - began
        log(f"{n:,}: built {name} {report.spec.params} in {build_s:.0f} s")
        for mmap in mmap_variants:
            result = run_child_measured({**common, "name": name, "kind": "ours", "path": str(work / f"{name}_{n}"),
                                         "mmap": mmap, "settings": settings})
            configs.append({"size": n, "index": f"st-pooling {name}{' (mmap)' if mmap else ''}",
                            "params": report.spec.params, "build_s": build_s, **result})
            log(f"{n:,}: {configs[-1]['index']}: {result['chosen']} peak {result['peak_rss_mb']:.0f} MB")

    def anchor(exact_search: bool, ef_search: int | None = None) -> None:
        began = time.perf_counter()
        _, _, index = semantic_search_faiss(queries[:1], corpus_embeddings=np.ascontiguousarray(vectors), top_k=K,
                                            rescore=False, exact=exact_search, output_index=True)
        build_s = time.perf_counter() - began
        path = work / f"anchor_{'flat' if exact_search else 'hnsw'}_{n}.faiss"
        faiss.write_index(index, str(path))
        del index
        label = "IndexFlatIP" if exact_search else f"IndexHNSWFlat(M=16, efSearch={ef_search or 16})"
        result = run_child_measured({**common, "name": label, "kind": "anchor", "path": str(path),
                                     "ef_search": ef_search})
        configs.append({"size": n, "index": f"anchor semantic_search_faiss {label}", "params": {},
                        "build_s": build_s, **result})
        log(f"{n:,}: {configs[-1]['index']}: {result['chosen']} peak {result['peak_rss_mb']:.0f} MB")

    anchor(True)
    ours("flat", [{}], mmap_variants=(False,), index_type="flat")
    nlist = int(round(2 * np.sqrt(n)))
    ivf_settings = [{"nprobe": p, "refine": r} for p in (8, 16, 32, 64) for r in (2, 4, 8)]
    ours("ivf-pq", ivf_settings, index_type="ivf", pq=True, index_params={"nlist": nlist, "pq_m": 48, "refine": 4})
    if n <= 200_000:  # HNSW builds take minutes at 100k on 2 busy CPUs; 1M would take most of an hour
        anchor(False)
        ours("hnsw", [{"ef_search": e} for e in (16, 32, 64, 128, 256)], index_type="hnsw")
    return configs


def table(configs: list[dict]) -> str:
    lines = ["| size | index | params / chosen setting | build s | recall@10 | queries/s (batch) | x anchor | ms/query "
             "(one at a time) | peak RSS MB | above import baseline MB |", "|---|---|---|---|---|---|---|---|---|---|"]
    for size in sorted({c["size"] for c in configs}):
        rows = [c for c in configs if c["size"] == size]
        anchor = next(c for c in rows if "IndexFlatIP" in c["index"])
        for c in rows:
            chosen = c["chosen"]
            lines.append(f"| {size:,} | {c['index']} | {c['params']} {chosen['setting']} | {c['build_s']:.1f} | "
                         f"{chosen['recall_at_10']:.3f} | {chosen['queries_per_s']:,.0f} | "
                         f"{chosen['queries_per_s'] / anchor['chosen']['queries_per_s']:.2f} | "
                         f"{c['single_query_ms']:.2f} | {c['peak_rss_mb']:,.0f} | {c['peak_rss_above_baseline_mb']:,.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    began = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - began:6.0f} s] {message}", flush=True)

    configs = []
    with tempfile.TemporaryDirectory(prefix="bench_index_scale_") as scratch:
        for n in args.sizes:
            work = Path(scratch) / str(n)
            work.mkdir()
            configs += bench_size(n, args.queries, work, log)
            RESULTS.parent.mkdir(parents=True, exist_ok=True)  # saved after each size: a long run keeps what it did
            RESULTS.write_text(json.dumps({"machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared)",
                                           "queries": args.queries, "k": K, "dimension": DIM,
                                           "target_recall": TARGET_RECALL, "wall_s": time.perf_counter() - began,
                                           "configs": configs}, indent=2) + "\n")
    print(table(configs))
    print(f"wall time {time.perf_counter() - began:.0f} s; results in {RESULTS}")


if __name__ == "__main__":
    main()
