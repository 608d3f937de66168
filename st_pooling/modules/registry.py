"""The name registry: short names ("mean", "gem", "mltp", ...) to pooling classes."""

from __future__ import annotations

from typing import Any

from st_pooling.modules.base import PoolingModule

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
    if cls.needs_layers:
        if num_layers is None:
            raise ValueError(f"pooling {name!r} needs the base model's number of hidden layers (num_layers)")
        options.setdefault("num_layers", num_layers)
    try:
        return cls(embedding_dimension=embedding_dimension, **options)
    except TypeError as error:
        raise ValueError(f"bad options for pooling {name!r} ({cls.__name__}): {error}") from None


def parameter_free_names() -> list[str]:
    """Registered poolings without learnable parameters."""
    return [name for name, cls in POOLINGS.items() if not cls.learnable]
