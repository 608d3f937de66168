"""The metadata saved beside each index, and the check that a query model matches it."""
from __future__ import annotations

import datetime as _dt
from pathlib import Path

from typing import TYPE_CHECKING

import faiss

from st_pooling.index.errors import IndexModelMismatchError, IndexStoreError
from st_pooling.index.spec import IndexSpec

if TYPE_CHECKING:  # imported where used: a search by vector needs neither torch nor sentence-transformers
    from sentence_transformers import SentenceTransformer

FORMAT_NAME = "st-pooling-index"
FORMAT_VERSION = 2  # 2: documents.sqlite + segment files + prompts (1: documents.jsonl + one index.faiss)


def _package_version() -> str:
    from st_pooling import __version__

    return __version__


def new_metadata(model_name: str, fingerprint: str | None, modules: list[str], dimension: int, spec: IndexSpec,
                 id_type: str, prompts: dict[str, str] | None = None, max_seq_length: int | None = None) -> dict:
    """Everything needed to reuse, audit or refuse an index (``count`` and ``segments`` are filled in at save).
    ``fingerprint`` None: built from precomputed vectors without a model (searched by vector only)."""
    import sentence_transformers

    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "model": {"name": model_name, "fingerprint": fingerprint, "modules": modules, "dimension": dimension,
                  "max_seq_length": max_seq_length},
        "prompts": dict(prompts or {"document": "", "query": ""}),
        "similarity": "cosine",
        "normalized": True,
        "metric": "inner_product",
        "index": {"type": spec.kind, "params": spec.params, "factory": spec.factory_string,
                  "chosen_by": spec.chosen_by},
        "id_type": id_type,
        "document_text": "title + ' ' + text when a title is present, else text",
        "versions": {"faiss": faiss.__version__, "st_pooling": _package_version(),
                     "sentence_transformers": sentence_transformers.__version__},
        "created": now,
        "updated": now,
    }


def spec_from_metadata(metadata: dict) -> IndexSpec:
    if metadata.get("format") != FORMAT_NAME:
        raise IndexStoreError(f"metadata format is {metadata.get('format')!r}, expected {FORMAT_NAME!r}")
    if metadata.get("format_version", 0) > FORMAT_VERSION:
        raise IndexStoreError(f"index format version {metadata['format_version']} is newer than this st-pooling "
                              f"reads ({FORMAT_VERSION}); upgrade st-pooling")
    index = metadata["index"]
    return IndexSpec(kind=index["type"], params=dict(index["params"]), chosen_by=index.get("chosen_by", "user"))


def check_query_model(metadata: dict, model: SentenceTransformer, index_path: Path) -> None:
    """Raise IndexModelMismatchError unless ``model`` has the index's dimension and fingerprint."""
    from st_pooling.index.fingerprint import model_fingerprint, module_classes

    expected = metadata["model"]
    if expected["fingerprint"] is None:
        raise IndexModelMismatchError(
            f"the index at {index_path} was built from precomputed vectors without a model, so no model can be "
            "checked against it; load it with model=None and search it with search_vectors")
    dimension = model.get_embedding_dimension()
    built_with = f"model {expected['name']!r} ({' -> '.join(expected['modules'])}, dimension {expected['dimension']})"
    if dimension != expected["dimension"]:
        raise IndexModelMismatchError(
            f"the index at {index_path} was built with {built_with}, but the query model makes {dimension}-d "
            "embeddings; search with the model that built the index, or rebuild the index with this model")
    fingerprint = model_fingerprint(model)
    if fingerprint != expected["fingerprint"]:
        raise IndexModelMismatchError(
            f"the index at {index_path} was built with {built_with}, fingerprint {expected['fingerprint'][:16]}...; "
            f"the query model ({' -> '.join(module_classes(model))}) has fingerprint {fingerprint[:16]}..., so its "
            f"weights or pooling differ{_length_hint(expected, model)} and its embeddings are not comparable with "
            "the index's; search with the model that built the index, or rebuild the index with this model")


def _length_hint(expected: dict, model: SentenceTransformer) -> str:
    built, now = expected.get("max_seq_length"), getattr(model, "max_seq_length", None)
    if built is not None and now != built:
        return f" (max_seq_length: the index was built with {built}, the query model has {now}; pass --max-seq-length {built})"
    return ""


def check_query_prompt(metadata: dict, query_prompt: str, index_path: Path) -> None:
    """Raise IndexModelMismatchError unless queries get the prompt the index was built to be searched with."""
    expected = metadata["prompts"].get("query", "")
    if query_prompt != expected:
        raise IndexModelMismatchError(
            f"the index at {index_path} was built for queries encoded with the prompt {expected!r} (documents with "
            f"{metadata['prompts'].get('document', '')!r}), but this search would encode them with {query_prompt!r}; "
            f"pass query_prompt={expected!r} (--query-prompt), use the model's prompts as they were at build time, "
            "or rebuild the index")
