"""Errors raised by :mod:`st_pooling.index`, each naming what was wrong and what to do."""
from __future__ import annotations


class CorpusError(ValueError):
    """The corpus could not be read: empty, malformed, empty documents or duplicate ids."""


class IndexModelMismatchError(ValueError):
    """The query model is not the model the index was built with (fingerprint or dimension)."""


class IndexStoreError(RuntimeError):
    """An index folder is missing, incomplete, or not an st-pooling index."""
