"""FAISS retrieval indexes from any SentenceTransformer: build, add, save atomically, load, search, evaluate.

    from st_pooling.index import build_index, load_index
    build_index(model, "corpus.jsonl", "my-index", model_name="minilm")
    hits = load_index("my-index", model).search("how do wings stall?", k=5)

See docs/indexing.md for choosing an index type.
"""
from st_pooling.index.build import (
    BuildReport,
    add_documents,
    build_index,
    compact_index,
    encode_normalized,
    merge_indexes,
    train_index,
)
from st_pooling.index.corpus import CorpusFile, Document, documents_from_mapping, scan_corpus
from st_pooling.index.errors import (
    CorpusError,
    CorpusFormatError,
    DamagedIndexError,
    IndexModelMismatchError,
    IndexStoreError,
)
from st_pooling.index.evaluate import (
    IndexEvaluation,
    evaluate_index,
    evaluate_with_mteb,
    recall_against_exact,
    retrieval_data_from_task,
)
from st_pooling.index.fingerprint import model_fingerprint
from st_pooling.index.search import SearchHit, SearchIndex, load_index
from st_pooling.index.spec import INDEX_TYPES, IndexSpec, choose_index_spec

__all__ = [
    "INDEX_TYPES",
    "BuildReport",
    "CorpusError",
    "CorpusFile",
    "CorpusFormatError",
    "DamagedIndexError",
    "Document",
    "IndexEvaluation",
    "IndexModelMismatchError",
    "IndexSpec",
    "IndexStoreError",
    "SearchHit",
    "SearchIndex",
    "add_documents",
    "build_index",
    "compact_index",
    "choose_index_spec",
    "documents_from_mapping",
    "encode_normalized",
    "evaluate_index",
    "evaluate_with_mteb",
    "load_index",
    "merge_indexes",
    "model_fingerprint",
    "recall_against_exact",
    "retrieval_data_from_task",
    "scan_corpus",
    "train_index",
]
