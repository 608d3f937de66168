"""The on-disk layout of an index folder, its write lock, its atomic save, and its checked load.

    my-index/
      CURRENT              one line: the name of the live version folder
      LOCK                 the writers' lock file (fcntl.flock); holds the pid of the last writer
      v000002/             the live version (older ones are removed once CURRENT moves on)
        index.faiss        the faiss index; its ids are 64-bit (see ``faiss_ids.npy``)
        metadata.json      model, fingerprint, dimension, index type and parameters, count, versions
        documents.jsonl    one {"id", "text"[, "title"]} per row, in the order they were added
        document_offsets.npy  byte offset of each row in documents.jsonl (int64, rows + 1)
        faiss_ids.npy      the faiss id of each row (int64): the user's id if every id is an
                           int64, else the row number

A writer (build, add) holds an exclusive ``fcntl.flock`` on LOCK for its whole write, so writers
take turns; the OS releases the lock when a writer dies. A save writes a complete new version into
a staging folder, then renames it into place and replaces CURRENT with ``os.replace`` (atomic). An
exception or a crash at any point before that leaves CURRENT naming the previous version, which
stays readable; the staging folder a dead writer leaves is removed by the next writer that takes
the lock. ``open_current`` reads a version and turns every missing, truncated or corrupt file into
one :class:`DamagedIndexError` that names the file and says how to rebuild.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import uuid
from array import array
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from st_pooling.index.corpus import Document
from st_pooling.index.errors import DamagedIndexError, IndexStoreError
from st_pooling.index.metadata import FORMAT_NAME, spec_from_metadata

POINTER_NAME = "CURRENT"
LOCK_NAME = "LOCK"
INDEX_FILE = "index.faiss"
METADATA_FILE = "metadata.json"
DOCUMENTS_FILE = "documents.jsonl"
OFFSETS_FILE = "document_offsets.npy"
FAISS_IDS_FILE = "faiss_ids.npy"
_STAGING_PREFIX = ".staging-"
_VERSION_NAME = re.compile(r"v\d{6}")
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
    def write_lock(self, wait: bool = True) -> Iterator[None]:
        """Hold the folder's exclusive write lock (``fcntl.flock`` on LOCK) for the enclosed write.

        Another writer holding it makes this wait (``wait``) or raise IndexStoreError naming its pid.
        Once the lock is held, staging folders left by a dead writer are removed."""
        if self.root.exists() and not self.root.is_dir():
            raise IndexStoreError(f"{self.root} is a file; give a folder path for the index")
        self.root.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(descriptor, 32, 0).decode("ascii", errors="replace").strip() or "unknown"
                if not wait:
                    raise IndexStoreError(f"{self.root} is being written by another process (pid {holder}); try "
                                          "again when it has finished, or leave out --no-wait to wait for it") from None
                logger.warning("%s is being written by another process (pid %s); waiting for it to finish",
                               self.root, holder)
                fcntl.flock(descriptor, fcntl.LOCK_EX)
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, f"{os.getpid()}\n".encode("ascii"), 0)
            for entry in self.root.iterdir():  # no other writer runs now: every staging folder is stale
                if entry.name.startswith(_STAGING_PREFIX) or entry.name.endswith(".tmp"):
                    shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
            yield
        finally:
            os.close(descriptor)  # releases the lock

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


def write_metadata(version: Path, metadata: dict) -> None:
    (version / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n", encoding="utf-8")


@dataclass
class OpenIndex:
    """A live version read and checked by ``open_current``."""

    root: Path
    version: Path
    metadata: dict
    index: faiss.Index
    documents: DocumentReader


def open_current(root: str | Path) -> OpenIndex:
    """Read the live version of the index at ``root`` and check its files agree with each other.

    Every missing, truncated or corrupt file raises DamagedIndexError naming it (a writer committing a
    new version meanwhile is not damage: then the new version is read)."""
    folder = IndexFolder(root)
    for attempt in range(3):
        pointer = folder.pointer_text()
        try:
            return _open_version(folder.root, folder.require_current())
        except DamagedIndexError:
            if attempt == 2 or folder.pointer_text() == pointer:
                raise
    raise AssertionError("unreachable")


def _open_version(root: Path, version: Path) -> OpenIndex:
    metadata = _read_metadata(root, version)
    model_name = metadata["model"]["name"]

    def damaged(name: str, problem: str) -> DamagedIndexError:
        return DamagedIndexError(root, version / name, problem, model_name)

    if not (version / INDEX_FILE).is_file():
        raise damaged(INDEX_FILE, "is missing")
    try:
        index = faiss.read_index(str(version / INDEX_FILE))
    except RuntimeError:
        raise damaged(INDEX_FILE, "cannot be read by faiss (truncated or corrupt)") from None
    if not isinstance(faiss.downcast_index(index), faiss.IndexIDMap2) or index.d != metadata["model"]["dimension"]:
        raise damaged(INDEX_FILE, f"is not the {metadata['model']['dimension']}-d IDMap2 index that "
                                  f"{METADATA_FILE} describes")
    documents = DocumentReader(version, model_name)
    if not index.ntotal == len(documents) == metadata["count"]:
        raise damaged(INDEX_FILE, f"holds {index.ntotal} vectors, {FAISS_IDS_FILE} {len(documents)} rows and "
                                  f"{METADATA_FILE} says {metadata['count']}; they must agree")
    return OpenIndex(root, version, metadata, index, documents)


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
    try:
        spec_from_metadata(metadata)  # refuses a newer format version
        model = metadata["model"]
        valid = (isinstance(model_name, str) and isinstance(model["fingerprint"], str)
                 and isinstance(model["dimension"], int) and isinstance(model["modules"], list)
                 and metadata["id_type"] in ("int64", "string") and isinstance(metadata["count"], int))
    except (KeyError, TypeError, AttributeError):
        valid = False
    if not valid:
        raise DamagedIndexError(root, path, "lacks fields the index needs (model name, fingerprint, dimension, "
                                            "modules; index type and parameters; id_type; count)",
                                model_name if isinstance(model_name, str) else None)
    return metadata


class DocumentWriter:
    """Appends documents to ``documents.jsonl`` and remembers row offsets and faiss ids (8 + 8 bytes a row)."""

    def __init__(self, version: Path, existing: DocumentReader | None = None) -> None:
        self.version = version
        self.offsets = array("q")
        self.faiss_ids = array("q")
        target = version / DOCUMENTS_FILE
        if existing is not None:
            shutil.copyfile(existing.path, target)
            self.offsets.extend(existing.offsets[:-1].tolist())
            self.faiss_ids.extend(existing.faiss_ids.tolist())
        self._handle = target.open("ab")

    @property
    def count(self) -> int:
        return len(self.faiss_ids)

    def append(self, documents: list[Document], faiss_ids: np.ndarray) -> None:
        for document, faiss_id in zip(documents, faiss_ids.tolist()):
            row = {"id": document.id, "text": document.text}
            if document.title:
                row["title"] = document.title
            self.offsets.append(self._handle.tell())
            self._handle.write(json.dumps(row, ensure_ascii=False).encode("utf-8") + b"\n")
            self.faiss_ids.append(faiss_id)

    def close(self) -> None:
        end = self._handle.tell()
        self._handle.close()
        np.save(self.version / OFFSETS_FILE, np.append(np.frombuffer(self.offsets, dtype=np.int64), end))
        np.save(self.version / FAISS_IDS_FILE, np.frombuffer(self.faiss_ids, dtype=np.int64))


class DocumentReader:
    """Random access to stored documents by faiss id, reading only the rows asked for.

    The document file stays open, so a loaded index keeps reading its version after a writer replaces it."""

    def __init__(self, version: Path, model_name: str | None = None) -> None:
        self.path = version / DOCUMENTS_FILE
        self._root, self._model_name = version.parent, model_name
        self.offsets = self._int64_array(OFFSETS_FILE)
        self.faiss_ids = self._int64_array(FAISS_IDS_FILE)
        if len(self.offsets) != len(self.faiss_ids) + 1 or self.offsets[0] != 0 or np.any(np.diff(self.offsets) <= 0):
            raise self._damaged(version / OFFSETS_FILE, f"does not hold the {len(self.faiss_ids) + 1} increasing "
                                                        f"row offsets that {FAISS_IDS_FILE} calls for")
        try:
            self._handle = self.path.open("rb")
        except OSError:
            raise self._damaged(self.path, "is missing or unreadable") from None
        size = os.fstat(self._handle.fileno()).st_size
        if size != self.offsets[-1]:
            self._handle.close()
            raise self._damaged(self.path, f"holds {size:,} bytes, but its {len(self.faiss_ids):,} rows end at byte "
                                           f"{int(self.offsets[-1]):,} (truncated or changed)")
        self._order = np.argsort(self.faiss_ids, kind="stable")
        self._ids: list[str] | None = None

    def _damaged(self, path: Path, problem: str) -> DamagedIndexError:
        return DamagedIndexError(self._root, path, problem, self._model_name)

    def _int64_array(self, name: str) -> np.ndarray:
        path = self.path.parent / name
        try:
            values = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise self._damaged(path, "is missing") from None
        except (OSError, ValueError, EOFError):
            raise self._damaged(path, "cannot be read (truncated or corrupt)") from None
        if values.dtype != np.int64 or values.ndim != 1:
            raise self._damaged(path, f"holds a {values.dtype} array of shape {values.shape}, not int64 row data")
        return values

    def __len__(self) -> int:
        return len(self.faiss_ids)

    def rows_for(self, faiss_ids: np.ndarray) -> np.ndarray:
        """Row numbers of the given faiss ids."""
        positions = np.searchsorted(self.faiss_ids, faiss_ids, sorter=self._order)
        rows = self._order[np.minimum(positions, len(self._order) - 1)]
        if not np.array_equal(self.faiss_ids[rows], faiss_ids):
            raise self._damaged(self.path.parent / FAISS_IDS_FILE, "lacks ids that the faiss index returned")
        return rows

    def _record(self, raw: bytes, row: int) -> dict:
        try:
            record = json.loads(raw)
            if isinstance(record, dict) and isinstance(record["id"], str) and isinstance(record["text"], str):
                return record
        except (ValueError, KeyError):
            pass
        raise self._damaged(self.path, f"row {row + 1} is not a JSON object with 'id' and 'text' (corrupt)")

    def read_rows(self, rows: np.ndarray) -> list[Document]:
        documents = []
        for row in rows.tolist():
            start, end = int(self.offsets[row]), int(self.offsets[row + 1])
            record = self._record(os.pread(self._handle.fileno(), end - start, start), row)
            documents.append(Document(id=record["id"], text=record["text"], title=record.get("title", "")))
        return documents

    def ids_of_rows(self, rows: np.ndarray) -> list[str]:
        """The user's ids of the given rows (the id column is read once, then kept)."""
        if self._ids is None:
            self._ids = list(self.iter_ids())
        return [self._ids[row] for row in rows.tolist()]

    def iter_ids(self) -> Iterator[str]:
        with os.fdopen(os.dup(self._handle.fileno()), "rb") as handle:
            handle.seek(0)
            for row, line in enumerate(handle):
                yield self._record(line, row)["id"]
