"""Packages whose public names are imported on first use, so importing the package (and ``st-pooling --help``)
does not load torch, sentence-transformers or faiss."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def lazy_exports(package: str, public: Mapping[str, Sequence[str]]
                 ) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """``(__all__, __getattr__, __dir__)`` for ``package``, whose names ``public`` lists by the module defining them.
    A name is imported from its module the first time it is read, then kept in the package."""
    home = {name: module for module, names in public.items() for name in names}
    names = list(home)

    def __getattr__(name: str) -> Any:
        if name not in home:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home[name]), name)
        setattr(importlib.import_module(package), name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(importlib.import_module(package)), *names})

    return names, __getattr__, __dir__
