"""Documents are embedded with ``model.encode_document`` and queries with ``model.encode_query``, so a model's
document and query prompts (and sentence-transformers' task routing) apply; the prompt texts used are recorded in
the index metadata and checked when the index is searched."""
from __future__ import annotations

from typing import TYPE_CHECKING

import faiss
import numpy as np

if TYPE_CHECKING:  # only annotations: searching by vector must not import torch
    from sentence_transformers import SentenceTransformer

ROLES = ("document", "query")
_PROMPT_NAMES = {"query": ("query",), "document": ("document", "passage", "corpus")}  # as sentence-transformers


def effective_prompt(model: SentenceTransformer, role: str, prompt: str | None = None) -> str:
    """The prompt text that ``encode_query`` / ``encode_document`` prepends for ``role``: ``prompt`` when given,
    else the model's prompt of that role's name, else its default prompt, else ''."""
    if prompt is not None:
        return prompt
    prompts = getattr(model, "prompts", None) or {}
    for name in _PROMPT_NAMES[role]:
        if name in prompts:
            return prompts[name]
    default = getattr(model, "default_prompt_name", None)
    return prompts.get(default, "") if default else ""


def encode_normalized(model: SentenceTransformer, texts: list[str], batch_size: int = 64, *, role: str = "document",
                      prompt: str | None = None) -> np.ndarray:
    """Unit-length float32 embeddings of ``texts`` as documents or queries (``role``), so inner product is cosine
    similarity. ``prompt`` overrides the model's prompt for that role. Shape (len(texts), dim)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    encode = model.encode_query if role == "query" else model.encode_document
    vectors = encode(texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False, prompt=prompt)
    return normalize_rows(vectors)


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """A float32 C-contiguous copy of ``vectors`` with each row scaled to unit length."""
    vectors = np.array(vectors, dtype=np.float32, order="C", copy=True)
    if vectors.ndim != 2:
        raise ValueError(f"expected a 2-d array of embeddings, got shape {vectors.shape}")
    if not np.isfinite(vectors).all():
        raise ValueError("embeddings contain NaN or infinity; check the model and the input texts")
    faiss.normalize_L2(vectors)
    return vectors
