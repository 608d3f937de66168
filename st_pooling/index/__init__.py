"""FAISS retrieval indexes from any SentenceTransformer: build, add, save atomically, load, search, evaluate.

    from st_pooling.index import build_index, load_index
    build_index(model, "corpus.jsonl", "my-index", model_name="minilm")
    hits = load_index("my-index", model).search("how do wings stall?", k=5)

See docs/indexing.md for choosing an index type.
"""
from typing import TYPE_CHECKING

from st_pooling.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "st_pooling.index.build": ["BuildReport", "add_documents", "build_index", "compact_index", "encode_normalized",
                               "merge_indexes", "train_index"],
    "st_pooling.index.corpus": ["CorpusFile", "Document", "documents_from_mapping", "scan_corpus"],
    "st_pooling.index.errors": ["CorpusError", "CorpusFormatError", "DamagedIndexError", "IndexModelMismatchError",
                                "IndexStoreError"],
    "st_pooling.index.evaluate": ["IndexEvaluation", "evaluate_index", "evaluate_with_mteb", "recall_against_exact",
                                  "retrieval_data_from_task"],
    "st_pooling.index.fingerprint": ["model_fingerprint"],
    "st_pooling.index.search": ["SearchHit", "SearchIndex", "load_index"],
    "st_pooling.index.spec": ["INDEX_TYPES", "IndexSpec", "choose_index_spec"],
})

if TYPE_CHECKING:  # what the names above are, for type checkers and editors
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
