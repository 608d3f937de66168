"""The on-disk layout of an index folder, its write lock, its atomic saves, and its checked load.

    my-index/
      CURRENT              one line: the name of the live version folder
      LOCK                 the writers' lock (st_pooling.atomic.exclusive_lock): pid, command and time of the
                           last writer, as JSON
      v000002/             the live version (a build, merge or compact makes a new one; older ones are removed)
        metadata.json      model, fingerprint, prompts, dimension, index type and parameters, count, segments;
                           the commit point of an add (replaced with os.replace)
        documents.sqlite   row -> id, text, title (st_pooling.index.documents)
        segment-000001.faiss  the vectors of rows 0..n1-1 (the build), keyed by position
        segment-000002.faiss  the vectors an add appended, and so on (st_pooling.index.segments)
        trained.faiss      IVF only: the trained, empty index whose quantiser adds and shards reuse

A writer (build, add, merge, compact) holds the exclusive lock on LOCK for its whole write, so writers take turns;
the OS releases it when a writer dies. A build writes a complete new version into a staging folder, then renames it
into place and replaces CURRENT with ``os.replace`` (atomic). An add appends to the live version: its rows go into
documents.sqlite in one SQLite transaction and its vectors into a new segment file, and only replacing
metadata.json (atomic) makes them part of the index; rows and segment files past what metadata.json lists are what
a dead add left, invisible to readers and removed by the next writer. ``open_current`` reads a version and turns
every missing, truncated or corrupt file into one :class:`DamagedIndexError` that names the file and says how to
rebuild. An index saved by st-pooling before the segment format (documents.jsonl) is refused with the command that
migrates it (``st-pooling index migrate``).
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import faiss

from st_pooling.atomic import LockBusyError, exclusive_lock
from st_pooling.index.documents import DOCUMENTS_DB, DocumentReader
from st_pooling.index.errors import DamagedIndexError, IndexStoreError, rebuild_command
from st_pooling.index.metadata import FORMAT_NAME, FORMAT_VERSION, spec_from_metadata
from st_pooling.index.segments import TRAINED_FILE, combine, read_index_file

POINTER_NAME = "CURRENT"
LOCK_NAME = "LOCK"
METADATA_FILE = "metadata.json"
LEGACY_DOCUMENTS_FILE = "documents.jsonl"
_STAGING_PREFIX = ".staging-"
_VERSION_NAME = re.compile(r"v\d{6}")
_SEGMENT_NAME = re.compile(r"segment-\d{6}\.faiss")
logger = logging.getLogger(__name__)


class IndexFolder:
    """An index folder holding versions of one index; one writer at a time (``write_lock``)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def versions(self) -> list[Path]:
        """The version folders (v000001, ...) in the root, oldest first."""
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if p.is_dir() and _VERSION_NAME.fullmatch(p.name))

    def holds_index(self) -> bool:
        """True when the folder holds an index, readable or damaged."""
        return (self.root / POINTER_NAME).exists() or bool(self.versions())

    def pointer_text(self) -> bytes | None:
        try:
            return (self.root / POINTER_NAME).read_bytes()
        except OSError:
            return None

    def current_version(self) -> Path | None:
        """The live version folder, or None when the folder holds no index; DamagedIndexError when
        CURRENT is missing beside version folders, unreadable, or names no version folder."""
        if not self.holds_index():
            return None
        pointer = self.root / POINTER_NAME
        raw = self.pointer_text()
        if raw is None:
            raise DamagedIndexError(self.root, pointer, "is missing or unreadable (it names the live version folder)")
        name = raw.decode("utf-8", errors="replace").strip()
        if not _VERSION_NAME.fullmatch(name) or not (self.root / name).is_dir():
            raise DamagedIndexError(self.root, pointer, f"names {name[:40]!r}, which is not a version folder here")
        return self.root / name

    def require_current(self) -> Path:
        version = self.current_version()
        if version is None:
            raise IndexStoreError(f"{self.root} holds no st-pooling index (no {POINTER_NAME} file); build one first")
        return version

    def commit_metadata(self, version: Path, metadata: dict) -> None:
        """Replace ``version``'s metadata.json atomically: what makes an add's rows and segment part of the index.
        Call it holding ``write_lock``."""
        temporary = version / f".{METADATA_FILE}.{uuid.uuid4().hex[:8]}.tmp"
        write_metadata(version, metadata, temporary)
        os.replace(temporary, version / METADATA_FILE)
        _fsync_dir(version)

    def check_writable(self, overwrite: bool) -> None:
        """Refuse to build into a folder holding someone's files, or over an index unless ``overwrite``."""
        if self.root.exists() and not self.root.is_dir():
            raise IndexStoreError(f"{self.root} is a file; give a folder path for the index")
        if self.holds_index():
            if not overwrite:
                raise IndexStoreError(f"{self.root} already holds an index; pass overwrite=True (--overwrite) "
                                      "to replace it, or add documents to it instead")
            return
        strangers = [p.name for p in self.root.iterdir() if not p.name.startswith(_STAGING_PREFIX)
                     and p.name != LOCK_NAME] if self.root.is_dir() else []
        if strangers:
            raise IndexStoreError(f"{self.root} is not empty and is not an st-pooling index (it holds "
                                  f"{strangers[:3]}); choose a new or empty folder")

    @contextmanager
    def write_lock(self, wait: bool = True, command: str = "st-pooling index") -> Iterator[None]:
        """Hold the folder's exclusive write lock (:func:`st_pooling.atomic.exclusive_lock` on LOCK) for the write.

        Another writer holding it makes this wait (``wait``) or raise IndexStoreError naming its pid and command.
        Once the lock is held, what a dead writer left is removed: staging folders, temporary files, and an
        unfinished add's segment files (its rows are removed when the next add opens the document store)."""
        if self.root.exists() and not self.root.is_dir():
            raise IndexStoreError(f"{self.root} is a file; give a folder path for the index")
        self.root.mkdir(parents=True, exist_ok=True)
        with ExitStack() as held:
            try:
                held.enter_context(exclusive_lock(self.root / LOCK_NAME, holder=command, wait=wait,
                                                  waiting_for=str(self.root)))
            except LockBusyError as busy:
                raise IndexStoreError(
                    f"{self.root} is being written by another process (pid {busy.holder.get('pid', 'unknown')}: "
                    f"{busy.holder.get('command', '?')}, since {busy.holder.get('since', '?')}); try again when it "
                    "has finished, or leave out --no-wait to wait for it") from None
            self._remove_leftovers()
            yield

    def _remove_leftovers(self) -> None:
        """No other writer runs now: every staging folder and temporary file is stale."""
        for entry in self.root.iterdir():
            if entry.name.startswith(_STAGING_PREFIX) or entry.name.endswith(".tmp"):
                shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
        try:
            version = self.current_version()
            if version is None:
                return
            listed = {s["file"] for s in _read_metadata(self.root, version)["segments"]}
        except (DamagedIndexError, IndexStoreError):
            return  # a damaged or old index is left as it is, for the error that loading it gives
        for entry in version.iterdir():
            if entry.name.endswith(".tmp") or (_SEGMENT_NAME.fullmatch(entry.name) and entry.name not in listed):
                entry.unlink(missing_ok=True)

    def stage(self) -> Path:
        """A fresh staging folder inside the root, to be filled and then committed or discarded."""
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f"{_STAGING_PREFIX}{uuid.uuid4().hex[:12]}"
        staging.mkdir()
        return staging

    def commit(self, staging: Path) -> Path:
        """Make ``staging`` the live version atomically, then remove older versions and stale staging.
        Call it holding ``write_lock``."""
        _fsync_tree(staging)
        number = max((int(p.name[1:]) for p in self.versions()), default=0) + 1
        version = self.root / f"v{number:06d}"
        os.replace(staging, version)
        pointer_tmp = self.root / f"{POINTER_NAME}.{uuid.uuid4().hex[:8]}.tmp"
        with pointer_tmp.open("w", encoding="utf-8") as handle:
            handle.write(version.name + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(pointer_tmp, self.root / POINTER_NAME)
        _fsync_dir(self.root)
        old_versions = set(self.versions()) - {version}
        for entry in self.root.iterdir():
            stale_version = entry in old_versions
            if stale_version or entry.name.startswith(_STAGING_PREFIX) or entry.name.endswith(".tmp"):
                shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
        return version

    @staticmethod
    def discard(staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)


def _fsync_dir(folder: Path) -> None:
    if hasattr(os, "O_DIRECTORY"):
        descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _fsync_tree(folder: Path) -> None:
    for path in folder.iterdir():
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
    _fsync_dir(folder)


def write_metadata(version: Path, metadata: dict, path: Path | None = None) -> None:
    path = path or version / METADATA_FILE
    with path.open("w", encoding="utf-8") as handle:
        handle.write(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


@dataclass
class OpenIndex:
    """A live version read and checked by ``open_current``; ``index`` searches every segment in row order."""

    root: Path
    version: Path
    metadata: dict
    index: faiss.Index
    documents: DocumentReader


def open_current(root: str | Path, *, mmap: bool = True) -> OpenIndex:
    """Read the live version of the index at ``root`` (segments memory-mapped if ``mmap``) and check its files agree.

    Every missing, truncated or corrupt file raises DamagedIndexError naming it (a writer committing a
    new version meanwhile is not damage: then the new version is read)."""
    folder = IndexFolder(root)
    for attempt in range(3):
        pointer = folder.pointer_text()
        try:
            return _open_version(folder.root, folder.require_current(), mmap)
        except DamagedIndexError:
            if attempt == 2 or folder.pointer_text() == pointer:
                raise
    raise AssertionError("unreachable")


def _open_version(root: Path, version: Path, mmap: bool) -> OpenIndex:
    metadata = _read_metadata(root, version)
    model_name = metadata["model"]["name"]

    def damaged(path: Path, problem: str) -> DamagedIndexError:
        return DamagedIndexError(root, path, problem, model_name)

    spec, dimension = spec_from_metadata(metadata), metadata["model"]["dimension"]
    segments = []
    for listed in metadata["segments"]:
        path = version / listed["file"]
        if not path.is_file():
            raise damaged(path, "is missing")
        try:
            segment = read_index_file(path, spec, mmap)
        except RuntimeError:
            raise damaged(path, "cannot be read by faiss (truncated or corrupt)") from None
        if segment.d != dimension or segment.ntotal != listed["rows"]:
            raise damaged(path, f"holds {segment.ntotal} {segment.d}-d vectors, but {METADATA_FILE} lists "
                                f"{listed['rows']} {dimension}-d vectors")
        segments.append(segment)
    if not segments:  # a trained quantiser (st-pooling index train) or an empty index
        trained = version / TRAINED_FILE
        segments.append(faiss.read_index(str(trained)) if trained.is_file() else spec.create(dimension))
    documents = DocumentReader(version / DOCUMENTS_DB, metadata["count"], damaged)
    return OpenIndex(root, version, metadata, combine(segments, dimension), documents)


def _read_metadata(root: Path, version: Path) -> dict:
    """The version's metadata, checked to hold what loading and searching use."""
    path = version / METADATA_FILE
    if not path.is_file():
        raise DamagedIndexError(root, path, "is missing")
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DamagedIndexError(root, path, f"cannot be read ({error})") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT_NAME:
        raise DamagedIndexError(root, path, f"is not st-pooling index metadata (no \"format\": \"{FORMAT_NAME}\")")
    model_name = metadata.get("model", {}).get("name") if isinstance(metadata.get("model"), dict) else None
    if metadata.get("format_version") == 1 and (version / LEGACY_DOCUMENTS_FILE).exists():
        raise IndexStoreError(
            f"the index at {root} was saved by an older st-pooling (documents.jsonl, one faiss file); this version "
            f"stores documents in SQLite and vectors in segments. Convert it in place with: st-pooling index migrate "
            f"--index {root} (or rebuild it with: {rebuild_command(root, model_name)})")
    try:
        spec_from_metadata(metadata)  # refuses a newer format version
        model = metadata["model"]
        segments = metadata["segments"]
        valid = (isinstance(model_name, str) and isinstance(model["fingerprint"], (str, type(None)))
                 and isinstance(model["dimension"], int) and isinstance(model["modules"], list)
                 and metadata["id_type"] in ("int64", "string") and isinstance(metadata["count"], int)
                 and isinstance(metadata["prompts"], dict)
                 and all(isinstance(s["file"], str) and _SEGMENT_NAME.fullmatch(s["file"]) and isinstance(s["rows"], int)
                         for s in segments)
                 and sum(s["rows"] for s in segments) == metadata["count"])
    except (KeyError, TypeError, AttributeError):
        valid = False
    if not valid:
        raise DamagedIndexError(root, path, "lacks fields the index needs (model name, fingerprint, dimension, "
                                            "modules; prompts; index type and parameters; id_type; count; segments "
                                            "whose rows add up to the count)",
                                model_name if isinstance(model_name, str) else None)
    return metadata


def read_live_metadata(root: str | Path) -> dict | None:
    """The live version's metadata, or None when there is no readable index (for defaults such as max_seq_length)."""
    folder = IndexFolder(root)
    try:
        version = folder.current_version()
        return _read_metadata(folder.root, version) if version else None
    except (DamagedIndexError, IndexStoreError):
        return None
