"""Errors raised by :mod:`st_pooling.index`, each naming what was wrong and what to do."""
from __future__ import annotations

import shlex
from pathlib import Path

from st_pooling.data.errors import DataFormatError


class CorpusError(ValueError):
    """The corpus could not be read: empty, malformed, empty documents or duplicate ids."""


class CorpusFormatError(CorpusError, DataFormatError):
    """A corpus file line that does not have the expected format (the training loaders' DataFormatError):
    the message names the file, the line and what was expected."""


class IndexModelMismatchError(ValueError):
    """The query model is not the model the index was built with (fingerprint or dimension)."""


class IndexStoreError(RuntimeError):
    """An index folder is missing, incomplete, or not an st-pooling index."""


def rebuild_command(root: str | Path, model_name: str | None) -> str:
    """The command that rebuilds the index at ``root`` from its corpus, with how to adapt it."""
    command = shlex.join(["st-pooling", "index", "build", "--model", model_name or "MODEL", "--corpus", "YOUR_CORPUS",
                          "--index", str(root), "--overwrite"])
    return (f"{command} (--base and --pooling instead of --model if it was built from a plain transformers model; "
            "YOUR_CORPUS: the corpus file it was built from)")


class DamagedIndexError(IndexStoreError):
    """A file of a saved index is missing, truncated or corrupt; the message says how to rebuild the index."""

    def __init__(self, root: str | Path, damaged_file: str | Path, problem: str, model_name: str | None = None) -> None:
        self.root = Path(root)
        self.damaged_file = Path(damaged_file)
        super().__init__(
            f"the index at {self.root} is damaged: {self.damaged_file} {problem}. Rebuild it with: "
            f"{rebuild_command(self.root, model_name)}; then `st-pooling index add` the files added since")
