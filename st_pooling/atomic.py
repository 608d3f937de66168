"""Replacing a folder without ever leaving a half-written one, or losing the old one to a failed step."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def replace_folder(staged: str | Path, destination: str | Path) -> Path:
    """Put the complete folder ``staged`` at ``destination`` with one rename, replacing what is there.

    The folder being replaced is first moved aside (same parent, so the moves are renames), restored if the rename
    fails, and removed only once the new folder is in place. Returns ``destination``.
    """
    staged, destination = Path(staged), Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    previous = None
    if destination.exists():
        previous = destination.with_name(f".{destination.name}.previous-{os.getpid()}")
        if previous.exists():
            shutil.rmtree(previous)
        os.replace(destination, previous)
    try:
        os.replace(staged, destination)
    except BaseException:
        if previous is not None:  # put the old folder back rather than lose it
            os.replace(previous, destination)
        raise
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)
    return destination
