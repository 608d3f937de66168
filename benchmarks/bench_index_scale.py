"""Indexes at 100k and 1M vectors: recall@10 against exact search, query latency, queries/s and peak RSS of a search
process, for st-pooling's flat, IVF-Flat, IVF-PQ with re-ranking and HNSW indexes (in memory and memory-mapped)
beside sentence-transformers' ``semantic_search_faiss`` (the anchor: its exact ``IndexFlatIP`` and its
``IndexHNSWFlat``, M=16, at its own efSearch 16 and raised).

Vectors (``--vectors``): ``synthetic`` (the default): 384-d synthetic "topics" (1,000 Gaussian centres, each vector =
centre + noise, unit-normalised); queries are drawn the same way with another seed. ``real``: the unique texts of the
shared benchmark data (``real_texts``: SST-2 phrases, STS-B and SICK sentences, Banking77 queries, MR, 20 Newsgroups
messages, Cranfield and CISI documents and queries; 131,578 after de-duplication) in a fixed shuffled order, encoded
with the packaged MiniLM (mean pooling, normalised, max_seq_length 64); the first ``--queries`` texts are held out
as queries, the next n are the corpus, so a smaller size is a subset of a larger one. The embeddings are cached
under ``--cache`` (runs/index_scale, git-ignored; in 10,000-text chunks keyed by model and texts), so a rerun does
not re-encode. Every index is built once in this process; every search runs in its own
child process (``--child``), which loads the index and the queries, sweeps the search-time knobs (efSearch, nprobe x
refine) and reports, per setting, queries/s (one batch of all queries), ms per query one at a time (the first 100
queries) and recall@10, plus its peak RSS (VmHWM). st-pooling's children import only ``st_pooling.index.search``
(faiss, numpy, sqlite3; no torch, which the JSON checks); their RSS right after the imports is the baseline, and peak
RSS is reported in total and above it. The anchor's child imports sentence-transformers (torch).
For each size, the st-pooling index and setting with the lowest one-at-a-time latency at recall@10 >= 0.95 is
printed (``fastest_at_target``); on the well-clustered synthetic vectors it is not a basis for
``choose_index_spec``'s defaults, on the real ones it is (docs/indexing.md, "Defaults by measurement"). HNSW is
built only up to ``--hnsw-up-to`` vectors. IVF's nprobe is swept over 1-128 up to nlist / 2, HNSW's efSearch over
16-512.

    nice -n 10 .venv/bin/python benchmarks/bench_index_scale.py [--sizes 100000 1000000] [--queries 1000]
    nice -n 10 .venv/bin/python benchmarks/bench_index_scale.py --vectors real --sizes 20000 50000

Results go to benchmarks/results/index_scale.json (sizes not re-run are kept); the recall-vs-latency plot to
docs/index_scale_recall_latency.png. With ``--vectors real``: benchmarks/results/index_scale_real.json and
docs/index_scale_real_recall_latency.png.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "index_scale.json"
PLOT = Path(__file__).resolve().parents[1] / "docs" / "index_scale_recall_latency.png"
K = 10
DIM = 384
TOPICS = 1000
TARGET_RECALL = 0.95
SINGLE_QUERIES = 100
EF_SEARCH = (16, 32, 64, 128, 256, 512)
MODEL_KEY = "minilm-mean-msl64"  # the real vectors: packaged MiniLM, mean pooling, normalised, max_seq_length 64
REAL_RESULTS = RESULTS.with_name("index_scale_real.json")
REAL_PLOT = PLOT.with_name("index_scale_real_recall_latency.png")


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


def real_texts(folder: Path) -> list[str]:
    """Every unique non-empty text of the shared benchmark data, in a fixed shuffled order (seed 0), so that any
    prefix mixes the sources: SST-2 phrases (train, dev, test), STS-B and SICK sentences (all splits), Banking77
    queries, MR sentences, 20 Newsgroups messages (subject + body; the model truncates them), Cranfield and CISI
    documents and queries. Duplicates are dropped after whitespace normalisation, first occurrence kept."""
    from st_pooling.data import (load_20newsgroups_clustering, load_banking77_classification, load_cisi,
                                 load_cranfield, load_mr, load_sick, load_sst2, load_stsbenchmark)
    from st_pooling.data.classification_loaders import _read_sst2_file

    texts: list[str] = []
    sst2 = load_sst2(folder / "sst2")
    texts += sst2.train_texts + _read_sst2_file(folder / "sst2" / "dev.tsv")[0] + sst2.test_texts
    for split in ("train", "dev", "test"):
        sts = load_stsbenchmark(folder / "stsbenchmark", split)
        texts += sts.sentences1 + sts.sentences2
    for split in ("train", "trial", "test"):
        sick = load_sick(folder / "sick", split)
        texts += sick.sentences1 + sick.sentences2
    banking = load_banking77_classification(folder / "banking77")
    mr = load_mr(folder / "mr")
    texts += banking.train_texts + banking.test_texts + mr.train_texts + mr.test_texts
    for split in ("train", "test"):
        texts += load_20newsgroups_clustering(folder / "20newsgroups", split=split).texts
    for collection in (load_cranfield(folder / "cranfield"), load_cisi(folder / "cisi")):
        texts += list(collection.corpus.values()) + list(collection.queries.values())
    seen: set[str] = set()
    unique = []
    for text in texts:
        key = " ".join(text.split())
        if key and key not in seen:
            seen.add(key)
            unique.append(text)
    order = np.random.default_rng(0).permutation(len(unique))
    return [unique[i] for i in order]


def real_embeddings(count: int, folder: Path, cache: Path, log) -> np.ndarray:
    """The first ``count`` texts of :func:`real_texts` encoded with the packaged MiniLM (mean pooling, normalised,
    max_seq_length 64), cached as ``cache/real_{MODEL_KEY}_{count}.npy``; a cached file of at least ``count`` rows
    for the same texts (checked by the SHA-256 of the texts, stored beside it) is reused, its first rows taken."""
    import hashlib

    texts = real_texts(folder)
    if count > len(texts):
        raise SystemExit(f"the shared data holds {len(texts):,} unique texts; {count:,} were asked for")
    for path in sorted(cache.glob(f"real_{MODEL_KEY}_*.npy"), key=lambda p: int(p.stem.rsplit("_", 1)[1])):
        rows = int(path.stem.rsplit("_", 1)[1])
        digest = hashlib.sha256("\n".join(texts[:rows]).encode()).hexdigest()
        if rows >= count and path.with_suffix(".sha256").exists() and path.with_suffix(".sha256").read_text() == digest:
            log(f"real vectors: {count:,} from the cache {path}")
            return np.load(path, mmap_mode="r")[:count]
    from st_pooling import build_model

    model = build_model("minilm", "mean", max_seq_length=64, device="cpu")
    out = np.empty((count, DIM), dtype=np.float32)
    chunks = cache / f"real_{MODEL_KEY}_chunks"  # 10,000 texts a file, so that an interrupted or larger run resumes
    chunks.mkdir(parents=True, exist_ok=True)
    began, encoded = time.perf_counter(), 0
    for start in range(0, count, 10_000):
        stop = min(count, start + 10_000)
        digest = hashlib.sha256("\n".join(texts[start:stop]).encode()).hexdigest()[:16]
        chunk = chunks / f"{start:07d}_{stop - start}_{digest}.npy"
        if chunk.exists():
            out[start:stop] = np.load(chunk)
            continue
        out[start:stop] = model.encode(texts[start:stop], batch_size=64, normalize_embeddings=True,
                                       convert_to_numpy=True)
        np.save(chunk, out[start:stop])
        encoded += stop - start
        log(f"real vectors: encoded {stop:,}/{count:,} ({encoded / (time.perf_counter() - began):.0f} texts/s)")
    path = cache / f"real_{MODEL_KEY}_{count}.npy"
    np.save(path, out)
    path.with_suffix(".sha256").write_text(hashlib.sha256("\n".join(texts[:count]).encode()).hexdigest())
    if encoded:
        path.with_suffix(".json").write_text(json.dumps(
            {"texts_encoded": encoded, "encode_s": time.perf_counter() - began,
             "texts_per_s": encoded / (time.perf_counter() - began), "torch_threads": _torch_threads()}))
    return out


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def make_data(vectors: str, n: int, n_queries: int, args: argparse.Namespace, log) -> tuple[np.ndarray, np.ndarray]:
    """(corpus, queries). Synthetic: TOPICS Gaussian topics, queries drawn with another seed. Real: the first
    ``n_queries`` texts are the held-out queries, the next ``n`` the corpus (unique texts, so no query is indexed);
    one cache serves every size (a smaller size is a prefix of the same vectors)."""
    if vectors == "synthetic":
        return synthetic(n, seed=1), synthetic(n_queries, seed=2)
    needed = n_queries + max(args.sizes)
    every = real_embeddings(needed, args.data, args.cache, log)
    return np.ascontiguousarray(every[n_queries:n_queries + n]), np.ascontiguousarray(every[:n_queries])


def rss_kb(field: str = "VmRSS") -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


# ----------------------------------------------------------------------------- child: one search process

def child(spec: dict) -> None:
    """One search process. st-pooling's indexes are searched through ``st_pooling.index.search`` alone, which
    imports faiss, numpy and sqlite3 but neither torch nor sentence-transformers (checked); the anchor is
    sentence-transformers' function, so its process imports torch. The baseline is the RSS after the imports,
    before the index is read."""
    import faiss

    queries = np.load(spec["queries"])
    truth = np.load(spec["truth"])
    if spec["kind"] == "anchor":
        from sentence_transformers.util.quantization import semantic_search_faiss

        baseline_kb = rss_kb()
        index = faiss.read_index(spec["path"])

        def search(batch: np.ndarray) -> np.ndarray:
            results, _, _ = semantic_search_faiss(batch, corpus_index=index, top_k=K, rescore=False, output_index=True)
            return np.array([[hit["corpus_id"] for hit in row] + [-1] * (K - len(row)) for row in results])

        def set_params(ef_search: int | None = None) -> None:
            if ef_search:
                faiss.downcast_index(index).hnsw.efSearch = ef_search
    else:
        from st_pooling.index.search import SearchIndex

        baseline_kb = rss_kb()
        loaded = SearchIndex.load(spec["path"], None, mmap=spec["mmap"])

        def search(batch: np.ndarray) -> np.ndarray:
            return loaded.search_vectors(batch, K)[1]

        set_params = loaded.set_search_params
    loaded_kb = rss_kb()
    rows = []
    for setting in spec["settings"]:
        set_params(**setting)
        search(queries[:10])  # warm up
        began = time.perf_counter()
        found = search(queries)
        seconds = time.perf_counter() - began
        recall = float(np.mean([len(set(a.tolist()) & set(b.tolist())) for a, b in zip(found, truth)])) / K
        began = time.perf_counter()
        for query in queries[:SINGLE_QUERIES]:
            search(query[None, :])
        single_ms = 1000 * (time.perf_counter() - began) / SINGLE_QUERIES
        rows.append({"setting": setting, "recall_at_10": recall, "queries_per_s": len(queries) / seconds,
                     "single_query_ms": single_ms})
    good = [r for r in rows if r["recall_at_10"] >= TARGET_RECALL]
    chosen = max(good, key=lambda r: r["queries_per_s"]) if good else max(rows, key=lambda r: r["recall_at_10"])
    print(json.dumps({"sweep": rows, "chosen": chosen, "single_query_ms": chosen["single_query_ms"],
                      "imports_torch": "torch" in sys.modules,
                      "baseline_rss_mb": baseline_kb / 1024, "rss_after_load_mb": loaded_kb / 1024,
                      "rss_anon_end_mb": rss_kb("RssAnon") / 1024, "rss_file_end_mb": rss_kb("RssFile") / 1024,
                      "peak_rss_mb": rss_kb("VmHWM") / 1024}))


RSS_FIELDS = ("baseline_rss_mb", "rss_after_load_mb", "rss_anon_end_mb", "rss_file_end_mb", "peak_rss_mb")


def run_child(spec: dict) -> dict:
    process = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True)
    if process.returncode != 0:
        raise RuntimeError(f"child {spec['name']} failed:\n{process.stderr[-3000:]}")
    return json.loads(process.stdout.strip().splitlines()[-1])


def run_child_measured(spec: dict) -> dict:
    """Sweep the settings in one child, then measure memory in a fresh child that searches (the same queries) at
    the chosen setting only, so that peak RSS is the chosen setting's, not the sweep's most expensive one's. Each
    child's peak is its own VmHWM (``ru_maxrss`` of RUSAGE_CHILDREN is the largest over all children so far, and
    starts from the parent's RSS at fork, which holds the corpus)."""
    result = run_child(spec)
    if len(spec["settings"]) > 1:
        alone = run_child({**spec, "settings": [result["chosen"]["setting"]]})
        result.update({field: alone[field] for field in RSS_FIELDS})
    result["rss_measured_at"] = result["chosen"]["setting"]
    result["peak_rss_above_baseline_mb"] = result["peak_rss_mb"] - result["baseline_rss_mb"]
    return result


# ----------------------------------------------------------------------------- parent: build, then measure

def bench_size(n: int, n_queries: int, work: Path, log, args: argparse.Namespace) -> list[dict]:
    import faiss
    from sentence_transformers.util.quantization import semantic_search_faiss

    from st_pooling.index import Document, build_index

    hnsw_up_to, ivf_flat_up_to = args.hnsw_up_to, args.ivf_flat_up_to
    began = time.perf_counter()
    vectors_file = work / f"vectors_{n}.npy"
    corpus, queries = make_data(args.vectors, n, n_queries, args, log)
    np.save(vectors_file, corpus)
    del corpus
    vectors = np.load(vectors_file, mmap_mode="r")
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
            configs.append({"size": n, "index": f"st-pooling {name}{' (mmap)' if mmap else ''}", "type": name,
                            "mmap": mmap, "params": report.spec.params, "build_s": build_s, **result})
            log(f"{n:,}: {configs[-1]['index']}: {result['chosen']} peak {result['peak_rss_mb']:.0f} MB "
                f"({result['peak_rss_above_baseline_mb']:.0f} above baseline)")

    def anchor(exact_search: bool, settings: list[dict]) -> None:
        began = time.perf_counter()
        _, _, index = semantic_search_faiss(queries[:1], corpus_embeddings=np.ascontiguousarray(vectors), top_k=K,
                                            rescore=False, exact=exact_search, output_index=True)
        build_s = time.perf_counter() - began
        path = work / f"anchor_{'flat' if exact_search else 'hnsw'}_{n}.faiss"
        faiss.write_index(index, str(path))
        del index
        label = "IndexFlatIP" if exact_search else "IndexHNSWFlat(M=16)"
        result = run_child_measured({**common, "name": label, "kind": "anchor", "path": str(path),
                                     "settings": settings})
        configs.append({"size": n, "index": f"anchor semantic_search_faiss {label}", "type": f"anchor {label}",
                        "mmap": False, "params": {}, "build_s": build_s, **result})
        log(f"{n:,}: {configs[-1]['index']}: {result['chosen']} peak {result['peak_rss_mb']:.0f} MB")

    anchor(True, [{}])
    ours("flat", [{}], mmap_variants=(False,), index_type="flat")
    nlist = int(round(2 * np.sqrt(n)))
    probes = [p for p in (1, 2, 4, 8, 16, 32, 64, 128) if p <= nlist // 2]
    if n <= ivf_flat_up_to:
        ours("ivf", [{"nprobe": p} for p in probes], index_type="ivf", index_params={"nlist": nlist})
    ours("ivf-pq", [{"nprobe": p, "refine": r} for p in probes if p <= 32 for r in (1, 2, 4, 8, 16, 32, 64)],
         index_type="ivf",
         pq=True, index_params={"nlist": nlist, "pq_m": DIM // 8, "refine": 4})
    if n <= hnsw_up_to:
        anchor(False, [{"ef_search": e} for e in EF_SEARCH])  # 16: semantic_search_faiss's own
        ours("hnsw", [{"ef_search": e} for e in EF_SEARCH], index_type="hnsw")
    else:
        log(f"{n:,}: HNSW not built: it took 301 s at 100k on this shared 2-CPU machine, so ~1 h or more at this size")
    return configs


def table(configs: list[dict]) -> str:
    lines = ["| size | index | params / chosen setting | build s | recall@10 | queries/s (batch) | x anchor | ms/query "
             "(one at a time) | peak RSS MB | above import baseline MB | torch imported |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for size in sorted({c["size"] for c in configs}):
        rows = [c for c in configs if c["size"] == size]
        anchor = next(c for c in rows if "IndexFlatIP" in c["index"])
        for c in rows:
            chosen = c["chosen"]
            lines.append(f"| {size:,} | {c['index']} | {c['params']} {chosen['setting']} | {c['build_s']:.1f} | "
                         f"{chosen['recall_at_10']:.3f} | {chosen['queries_per_s']:,.0f} | "
                         f"{chosen['queries_per_s'] / anchor['chosen']['queries_per_s']:.2f} | "
                         f"{chosen['single_query_ms']:.2f} | {c['peak_rss_mb']:,.0f} | "
                         f"{c['peak_rss_above_baseline_mb']:,.0f} | {'yes' if c['imports_torch'] else 'no'} |")
    return "\n".join(lines)


def fastest_at_target(configs: list[dict], size: int) -> dict | None:
    """The st-pooling index type and setting with the lowest one-at-a-time query latency among those reaching
    recall@10 >= TARGET_RECALL at ``size`` (the rule behind ``choose_index_spec``'s defaults)."""
    candidates = [(row["single_query_ms"], c, row) for c in configs if c["size"] == size
                  and c["index"].startswith("st-pooling") for row in c["sweep"]
                  if row["recall_at_10"] >= TARGET_RECALL]
    if not candidates:
        return None
    ms, config, row = min(candidates, key=lambda item: item[0])
    return {"size": size, "type": config["type"], "params": {**config["params"], **row["setting"]},
            "single_query_ms": ms, "recall_at_10": row["recall_at_10"], "queries_per_s": row["queries_per_s"]}


def plot(configs: list[dict], path: Path, data_label: str = "synthetic") -> None:
    """Recall@10 against one-at-a-time latency, one panel per size, one line per index (its sweep)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({c["size"] for c in configs})
    figure, axes = plt.subplots(1, len(sizes), figsize=(5.5 * len(sizes), 4.5), squeeze=False)
    for axis, size in zip(axes[0], sizes):
        for c in (c for c in configs if c["size"] == size):
            sweep = sorted(c["sweep"], key=lambda r: r["single_query_ms"])
            best, front = -1.0, []
            for row in sweep:  # the Pareto front: each point must beat the recall of every faster one
                if row["recall_at_10"] > best:
                    best = row["recall_at_10"]
                    front.append(row)
            axis.plot([r["single_query_ms"] for r in front], [r["recall_at_10"] for r in front], marker="o",
                      label=c["index"].replace("semantic_search_faiss ", ""))
        axis.axhline(TARGET_RECALL, color="grey", linestyle=":")
        axis.set_xscale("log")
        axis.set_title(f"{size:,} vectors ({DIM}-d {data_label})")
        axis.set_xlabel("ms per query, one at a time (log)")
        axis.set_ylabel("recall@10 vs exact")
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def save(configs: list[dict], args: argparse.Namespace, wall_s: float) -> None:
    """Write the results, keeping those of sizes this run did not measure."""
    old = json.loads(args.output.read_text()) if args.output.exists() else {}
    measured = {c["size"] for c in configs}
    kept = [c for c in old.get("configs", []) if c["size"] not in measured]
    runs = [r for r in old.get("runs", []) if not set(r["sizes"]) <= measured]
    runs.append({"sizes": sorted(measured), "wall_s": wall_s, "command": " ".join(sys.argv),
                 "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())})
    every = sorted(kept + configs, key=lambda c: c["size"])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared)", "vectors": args.vectors,
        **({"model": MODEL_KEY, "data": "unique texts of the shared benchmark data (real_texts)"}
           if args.vectors == "real" else {}), "queries": args.queries, "k": K,
        "dimension": DIM, "target_recall": TARGET_RECALL, "single_queries": SINGLE_QUERIES, "runs": runs,
        "fastest_at_target": [fastest_at_target(every, size) for size in sorted({c["size"] for c in every})],
        "configs": every}, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--hnsw-up-to", type=int, default=200_000,
                        help="build HNSW only up to this size (its build is the slow part)")
    parser.add_argument("--ivf-flat-up-to", type=int, default=200_000,
                        help="build IVF-Flat only up to this size (IVF-PQ with re-ranking is built at every size)")
    parser.add_argument("--vectors", choices=("synthetic", "real"), default="synthetic",
                        help="synthetic Gaussian topics, or the shared data's unique texts encoded with MiniLM")
    parser.add_argument("--data", type=Path, default=None, help="the shared data folder (real vectors)")
    parser.add_argument("--cache", type=Path, default=Path(__file__).resolve().parents[1] / "runs" / "index_scale",
                        help="where the real vectors are cached (.npy)")
    parser.add_argument("--output", type=Path, default=None,
                        help=f"default {RESULTS.name}, or {REAL_RESULTS.name} with --vectors real")
    parser.add_argument("--plot", type=Path, default=None, help="recall-vs-latency PNG, drawn from --output")
    parser.add_argument("--plot-only", action="store_true", help="only redraw the PNG from --output")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    real = args.vectors == "real"
    args.output = args.output or (REAL_RESULTS if real else RESULTS)
    args.plot = args.plot or (REAL_PLOT if real else PLOT)
    if real and args.data is None:
        from st_pooling.data import shared_data_dir

        args.data = shared_data_dir()
        if args.data is None:
            raise SystemExit("--vectors real needs the shared data folder: pass --data")
    if not args.plot_only:
        began = time.perf_counter()

        def log(message: str) -> None:
            print(f"[{time.perf_counter() - began:6.0f} s] {message}", flush=True)

        configs: list[dict] = []
        with tempfile.TemporaryDirectory(prefix="bench_index_scale_") as scratch:
            for n in args.sizes:
                work = Path(scratch) / str(n)
                work.mkdir()
                size_began = time.perf_counter()
                configs += bench_size(n, args.queries, work, log, args)
                log(f"{n:,}: done in {time.perf_counter() - size_began:.0f} s")
                save(configs, args, time.perf_counter() - began)  # after each size: a long run keeps what it did
                shutil.rmtree(work, ignore_errors=True)
        print(table(configs))
        print(f"wall time {time.perf_counter() - began:.0f} s; results in {args.output}")
    everything = json.loads(args.output.read_text())
    for best in everything["fastest_at_target"]:
        print(f"fastest at recall@10 >= {TARGET_RECALL}: {best}")
    plot(everything["configs"], args.plot, "MiniLM, real texts" if everything.get("vectors") == "real" else "synthetic")
    print(f"plot in {args.plot}")


if __name__ == "__main__":
    main()
