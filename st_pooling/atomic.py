"""Output folders: replaced without ever leaving a half-written one or losing the old one to a failed step
(:func:`replace_folder`), and owned by one writer at a time without touching what a user put there
(:func:`owned_output`)."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
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


# ----------------------------------------------------------------------------- one writer at a time

logger = logging.getLogger(__name__)


class LockBusyError(BlockingIOError):
    """Another live process holds the lock; ``holder`` is what it recorded (pid, command, since)."""

    def __init__(self, lock_path: Path, holder: dict) -> None:
        self.lock_path, self.holder = lock_path, holder
        super().__init__(f"{lock_path} is held by {self.holder_text}")

    @property
    def holder_text(self) -> str:
        """``pid N (command, since TIME)``, or ``another process`` when the holder has not recorded itself yet."""
        if not self.holder:
            return "another process"
        return f"pid {self.holder.get('pid', '?')} ({self.holder.get('command', '?')}, since {self.holder.get('since', '?')})"


def read_lock_holder(lock_path: str | Path) -> dict:
    """What the holder of ``lock_path`` recorded: {"pid", "command", "since"}, or {} when unknown (JSON, never
    unpickled)."""
    try:
        holder = json.loads(Path(lock_path).read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


@contextmanager
def exclusive_lock(lock_path: str | Path, *, holder: str, wait: bool, remove_when_released: bool = False,
                   waiting_for: str | None = None) -> Iterator[Path]:
    """Hold an exclusive ``fcntl.flock`` on ``lock_path`` for the enclosed block, recording who holds it.

    The lock file holds ``{"pid", "command": holder, "since"}`` as JSON while held. When another process holds it,
    ``wait=False`` raises :class:`LockBusyError` naming that process; ``wait=True`` logs a warning naming it
    (``"<waiting_for> is being written by pid N (command, since T); waiting for it to finish"``) and blocks until
    it is released. The OS releases the lock when its holder dies, so there are no stale locks.
    ``remove_when_released`` deletes the lock file on release (while still holding it); a process that opened the
    path just before then holds a lock nobody else can reach, so after locking the path must still name the locked
    file, else it is opened again."""
    lock_path = Path(lock_path)
    while True:
        handle = open(lock_path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            busy = LockBusyError(lock_path, read_lock_holder(lock_path))
            if not wait:
                handle.close()
                raise busy from None
            logger.warning("%s is being written by %s; waiting for it to finish", waiting_for or lock_path,
                           busy.holder_text)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX)
            except BaseException:
                handle.close()
                raise
        try:
            if os.stat(lock_path).st_ino == os.fstat(handle.fileno()).st_ino:
                break
        except FileNotFoundError:
            pass
        handle.close()
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "command": holder, "since": time.strftime("%Y-%m-%d %H:%M:%S")}))
        handle.flush()
        yield lock_path
    finally:
        if remove_when_released:
            lock_path.unlink(missing_ok=True)  # while still holding it
        handle.close()  # releases the lock


# ----------------------------------------------------------------------------- owning an output folder

OWNER_FILE = ".st-pooling-output.json"  # written into every output folder a command of st-pooling fills in place


class OutputBusyError(FileExistsError):
    """Another live process is writing the same output folder."""


def _lock_path(target: Path) -> Path:
    # beside the folder, not inside it: the folder itself may be replaced by a rename while the lock is held
    return target.with_name(f".{target.name}.lock")


def remove_stale_staging(target: Path) -> None:
    """Staging folders of earlier writers of ``target`` that died mid-write (call only while holding its lock)."""
    for stale in target.parent.glob(f".{target.name}.partial*"):
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)


@contextmanager
def owned_output(target: str | Path, command: str, *, overwrite: bool = False, replaced_whole: bool = False
                 ) -> Iterator[Path]:
    """Hold ``target`` for one command's whole write, so no second process and no stranger's files are hurt.

    * An exclusive OS lock (:func:`exclusive_lock` on ``.<name>.lock`` beside the folder) is held until the block ends; a
      second writer is refused at once with the holder named (the lock dies with its process: no stale locks).
    * A non-empty folder is refused unless ``overwrite``, except, for a command that fills the folder in place
      (``replaced_whole=False``: compare, search), one that st-pooling wrote (it holds :data:`OWNER_FILE`), which the
      same kind of command may write again (a rerun, a resumed search). A command whose result replaces the whole
      folder (``replaced_whole=True``: train, export) needs ``overwrite`` for any non-empty folder.
    * Staging folders that dead writers left beside it are removed.
    """
    target = Path(target).expanduser().resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    with ExitStack() as held:
        try:
            held.enter_context(exclusive_lock(_lock_path(target), holder=command, wait=False,
                                              remove_when_released=True))
        except LockBusyError as busy:
            raise OutputBusyError(f"{target} is being written by {busy.holder_text}: wait for it to finish or "
                                  "choose another output folder") from None
        _refuse_foreign_content(target, command, overwrite, replaced_whole)
        remove_stale_staging(target)
        if not replaced_whole:  # marked before the first write: a failed run's folder is still known as ours
            target.mkdir(parents=True, exist_ok=True)
            (target / OWNER_FILE).write_text(json.dumps({"command": command}), encoding="utf-8")
        yield target


def _refuse_foreign_content(target: Path, command: str, overwrite: bool, replaced_whole: bool) -> None:
    if not target.exists():
        return
    if not target.is_dir():
        raise FileExistsError(f"{target} is a file, not a folder: choose another output folder")
    if overwrite or not any(target.iterdir()):
        return
    owner = target / OWNER_FILE
    if not replaced_whole and owner.is_file():
        try:
            written_by = json.loads(owner.read_text(encoding="utf-8")).get("command")
        except (OSError, ValueError):
            written_by = None
        if written_by == command:
            return
        raise FileExistsError(f"{target} holds the output of `st-pooling {written_by}`, not of `st-pooling {command}`: "
                              "choose another output folder or pass --overwrite")
    raise FileExistsError(f"{target} exists and is not empty, and st-pooling {command} did not write it: choose another "
                          "output folder or pass --overwrite to write into it anyway")
