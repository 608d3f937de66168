"""Typed, checked pooling options: one place that reads them, from a command-line spec and from a saved config.json.

The types come from each pooling class's ``__init__`` annotations, so a new option needs no parser of its own:

* booleans from ``true/false``, ``1/0`` or ``yes/no`` only (``exclude_first_token=off`` is refused, not read as True);
* integers are counts (latents, heads, groups, layers): positive, so ``num_latents=0`` is refused, not silently
  replaced by the default;
* layer lists are written ``layers=3``, ``layers=1,3,5`` or ``layers=4+5+6``; an empty list is refused;
* unknown option names are refused with the valid ones listed.
Every error names where the option came from (the spec text or the config file).
"""

from __future__ import annotations

import inspect
import math
import typing
from collections.abc import Mapping
from typing import Any

TRUE_WORDS = {"true", "1", "yes"}
FALSE_WORDS = {"false", "0", "no"}
NONE_WORDS = {"none", "null"}


class PoolingOptionError(ValueError):
    """A pooling option that is unknown or has a value of the wrong kind; the message names its source."""


def option_types(cls: type) -> dict[str, Any]:
    """Each constructor option of ``cls`` with its annotated type (``embedding_dimension`` included)."""
    init = getattr(cls, "__init__")  # noqa: B009  (cls.__init__ on a plain `type` is unsound to mypy)
    hints = typing.get_type_hints(init)
    names = [name for name in inspect.signature(init).parameters if name != "self"]
    return {name: hints.get(name, Any) for name in names}


def checked_options(cls: type, options: Mapping[str, Any], source: str) -> dict[str, Any]:
    """``options`` for ``cls(**options)``, each converted to its declared type, or a PoolingOptionError naming
    ``source`` (e.g. ``"--poolings gem:initial_p=abc"`` or a config.json path)."""
    types = option_types(cls)
    unknown = sorted(set(options) - set(types))
    if unknown:
        raise PoolingOptionError(f"{source}: unknown option(s) {', '.join(unknown)} for {cls.__name__}; valid options: "
                                 f"{', '.join(name for name in types if name != 'embedding_dimension')}")
    return {name: _converted(value, types[name], name, cls, source) for name, value in options.items()}


def check_required(cls: type, options: Mapping[str, Any], source: str) -> None:
    """Refuse options that leave out one ``cls`` cannot be built without (a saved config.json with a key deleted)."""
    required = [name for name, parameter in inspect.signature(getattr(cls, "__init__")).parameters.items()
                if name != "self" and parameter.default is inspect.Parameter.empty
                and parameter.kind is not inspect.Parameter.VAR_KEYWORD]
    missing = [name for name in required if name not in options]
    if missing:
        raise PoolingOptionError(f"{source}: {cls.__name__} needs {', '.join(missing)}, which it does not give; "
                                 "save the model again or restore the file")


def _converted(value: Any, declared: Any, name: str, cls: type, source: str) -> Any:
    allowed = [t for t in typing.get_args(declared) if t is not type(None)] if _is_optional(declared) else [declared]
    if _is_optional(declared) and (value is None or (isinstance(value, str) and value.lower() in NONE_WORDS)):
        return None
    target = allowed[0] if len(allowed) == 1 else Any
    try:
        return _as(target, value)
    except (TypeError, ValueError) as error:
        raise PoolingOptionError(f"{source}: option {name}={value!r} of {cls.__name__}: {error}") from None


def _is_optional(declared: Any) -> bool:
    return type(None) in typing.get_args(declared)


def _as(target: Any, value: Any) -> Any:
    if target is bool:
        return _as_bool(value)
    if target is int:
        return _as_count(value)
    if target is float:
        try:
            number = float(value) if not isinstance(value, bool) else math.nan
        except ValueError:
            raise ValueError("expected a number") from None
        if not math.isfinite(number):
            raise ValueError("expected a finite number")
        return number
    if target is str:
        if not isinstance(value, str) or not value:
            raise ValueError("expected a non-empty word")
        return value
    if typing.get_origin(target) is list:
        return _as_layer_list(value)
    return value


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError("expected true/false, 1/0 or yes/no")


def _as_count(value: Any) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError("expected a whole number")
    try:
        number = int(str(value).strip()) if isinstance(value, str) else int(value)
    except ValueError:
        raise ValueError("expected a whole number") from None
    if number < 1:
        raise ValueError("expected a positive whole number (1 or more)")
    return number


def _as_layer_list(value: Any) -> list[int]:
    if isinstance(value, str):
        parts = [part for part in value.replace("+", ",").split(",") if part.strip()]
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        parts = [value]
    if not parts:
        raise ValueError("the list is empty: give one or more layer numbers, e.g. layers=3 or layers=1,3,5")
    return [_as_count(part) for part in parts]
