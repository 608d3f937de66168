"""Argument types shared by the command line: a bad number is refused while parsing, naming the option, before any
model is loaded (``--max-train -3`` used to fail deep inside random.sample)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def _number(text: str, cast: Callable[[str], float], accept: Callable[[float], bool], wanted: str) -> float:
    try:
        value = cast(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not accept(value):
        raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """A whole number >= 1 (counts, sizes, lengths)."""
    return int(_number(text, int, lambda value: value >= 1, "a whole number of 1 or more"))


def positive_float(text: str) -> float:
    """A finite number > 0 (learning rates, budgets, thresholds)."""
    return _number(text, float, lambda value: value > 0, "a number above 0")


def fraction(text: str) -> float:
    """A number in [0, 1)."""
    return _number(text, float, lambda value: 0 <= value < 1, "a number in [0, 1)")


def add_progress_flag(parser: argparse.ArgumentParser, help: str = "hide progress bars") -> None:
    """The one progress flag every command has: ``--no-progress`` (``--quiet`` is the same flag)."""
    parser.add_argument("--no-progress", "--quiet", dest="no_progress", action="store_true", help=help)


BASE_HELP = "the transformer the pooling is put on: a folder, a Hub name, or a packaged short name (minilm, smollm2)"


class _RenamedToBase(argparse.Action):
    """``--model`` where ``--base`` is meant: the value is kept, with a note (``--model`` names a saved model)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        import sys

        print(f"note: {parser.prog} takes the base model as --base; --model is kept as its old name and now means "
              "a saved SentenceTransformer elsewhere (index, export)", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_base_flag(parser: argparse._ActionsContainer, default: str | None = "minilm", help: str = BASE_HELP) -> None:
    """``--base``: the one name for "the transformer st-pooling puts poolings on" (compare, train, tune, sweep).
    ``--model`` always names a saved SentenceTransformer loaded as it is (index, export); given to these commands it
    is still read as ``--base`` (its old meaning there), with a note."""
    parser.add_argument("--base", default=default, help=help)
    parser.add_argument("--model", dest="base", action=_RenamedToBase, help=argparse.SUPPRESS)
