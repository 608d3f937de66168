"""Loading saved st-pooling models with plain ``SentenceTransformer(path)``.

sentence-transformers 6 refuses to import a module class outside its own namespace unless the caller passes
``trust_remote_code=True``: the class named in ``modules.json`` could be any code. st-pooling's classes are
installed code the user already chose to run by importing ``st_pooling``, so the import registers them as known
classes; afterwards ``SentenceTransformer(path)`` loads a saved st-pooling model without ``trust_remote_code``, and
the gate stays closed for every other class.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from sentence_transformers import SentenceTransformer
from sentence_transformers.base.model import BaseModel


def class_ref(cls: type) -> str:
    """The ``type`` string sentence-transformers writes to ``modules.json`` for ``cls``."""
    return f"{cls.__module__}.{cls.__name__}"


def register_module_classes(*classes: type) -> None:
    """Make ``classes`` loadable from ``modules.json`` without ``trust_remote_code``."""
    known = dict(BaseModel._module_classes)
    known.update({class_ref(cls): cls for cls in classes})
    BaseModel._module_classes = MappingProxyType(known)


def load_model(path: str, **kwargs: Any) -> SentenceTransformer:
    """Load a saved st-pooling model (a convenience for ``import st_pooling; SentenceTransformer(path)``)."""
    return SentenceTransformer(path, **kwargs)
