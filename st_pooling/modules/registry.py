"""The name registry: short names ("mean", "gem", "mltp", ...) to pooling classes."""

from __future__ import annotations

from typing import Any

from st_pooling.modules.base import LAYER_STACK, PoolingModule
from st_pooling.modules.options import checked_options

POOLINGS: dict[str, type[PoolingModule]] = {}


def register_pooling(cls: type[PoolingModule]) -> type[PoolingModule]:
    """Class decorator: make ``cls`` reachable by its ``name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a non-empty `name` to be registered")
    if cls.name in POOLINGS and POOLINGS[cls.name] is not cls:
        raise ValueError(f"pooling name {cls.name!r} is already taken by {POOLINGS[cls.name].__name__}")
    POOLINGS[cls.name] = cls
    return cls


def pooling_class(name: str) -> type[PoolingModule]:
    """The class registered under ``name``, with the list of valid names when it is unknown."""
    try:
        return POOLINGS[name]
    except KeyError:
        raise ValueError(f"unknown pooling {name!r}; choose one of: {', '.join(sorted(POOLINGS))}") from None


def create_pooling(name: str, embedding_dimension: int, num_layers: int | None = None, **options: Any) -> PoolingModule:
    """Instantiate the pooling ``name`` for a base model of ``embedding_dimension`` (and ``num_layers`` layers)."""
    cls = pooling_class(name)
    if cls.reads == LAYER_STACK:
        if num_layers is None:
            raise ValueError(f"pooling {name!r} needs the base model's number of hidden layers (num_layers)")
        options.setdefault("num_layers", num_layers)
    options = checked_options(cls, options, f"options of pooling {name!r}")
    return cls(embedding_dimension=embedding_dimension, **options)


def parameter_free_names() -> list[str]:
    """Registered poolings without learnable parameters."""
    return [name for name, cls in POOLINGS.items() if not cls.learnable]
