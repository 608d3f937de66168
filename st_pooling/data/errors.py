"""Errors raised by the data loaders: they name the file, the line and what was expected."""

from __future__ import annotations

from pathlib import Path


class DataFormatError(ValueError):
    """A data file does not have the format its loader expects."""

    def __init__(self, path: str | Path, message: str, line: int | None = None) -> None:
        self.path = Path(path)
        self.line = line
        where = f"{self.path}, line {line}" if line is not None else str(self.path)
        super().__init__(f"{where}: {message}")


def missing_files_error(folder: str | Path, expected: list[str], dataset: str) -> FileNotFoundError:
    """A FileNotFoundError that names the folder, the files expected in it and the ones missing."""
    folder = Path(folder)
    if not folder.is_dir():
        return FileNotFoundError(
            f"{dataset}: the folder {folder} does not exist. Point the loader at the folder that holds "
            f"{', '.join(expected)} (or set ST_POOLING_DATA_DIR to the parent folder of the data sets)."
        )
    missing = [name for name in expected if not (folder / name).is_file()]
    return FileNotFoundError(
        f"{dataset}: {folder} lacks {', '.join(missing)}; the loader expects the files "
        f"{', '.join(expected)} in that folder."
    )


def require_files(folder: str | Path, expected: list[str], dataset: str) -> Path:
    """Return ``folder`` as a Path after checking that every expected file is in it."""
    folder = Path(folder).expanduser()
    if not folder.is_dir() or any(not (folder / name).is_file() for name in expected):
        raise missing_files_error(folder, expected, dataset)
    return folder
