"""The on-disk layout of an index folder, and its atomic save.

    my-index/
      CURRENT              one line: the name of the live version folder
      v000002/             the live version (older ones are removed once CURRENT moves on)
        index.faiss        the faiss index; its ids are 64-bit (see ``faiss_ids.npy``)
        metadata.json      model, fingerprint, dimension, index type and parameters, count, versions
        documents.jsonl    one {"id", "text"[, "title"]} per row, in the order they were added
        document_offsets.npy  byte offset of each row in documents.jsonl (int64, rows + 1)
        faiss_ids.npy      the faiss id of each row (int64): the user's id if every id is an
                           int64, else the row number

A save writes a complete new version into a staging folder, then renames it into place and
replaces CURRENT with ``os.replace`` (atomic). An exception or a crash at any point before
that leaves CURRENT naming the previous version, which stays readable.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from array import array
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from st_pooling.index.corpus import Document
from st_pooling.index.errors import IndexStoreError

POINTER_NAME = "CURRENT"
INDEX_FILE = "index.faiss"
METADATA_FILE = "metadata.json"
DOCUMENTS_FILE = "documents.jsonl"
OFFSETS_FILE = "document_offsets.npy"
FAISS_IDS_FILE = "faiss_ids.npy"
_STAGING_PREFIX = ".staging-"


class IndexFolder:
    """An index folder holding versions of one index; one writer at a time."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def current_version(self) -> Path | None:
        """The live version folder, or None when the folder holds no index yet."""
        pointer = self.root / POINTER_NAME
        if not pointer.is_file():
            return None
        version = self.root / pointer.read_text(encoding="utf-8").strip()
        if not (version / METADATA_FILE).is_file():
            raise IndexStoreError(f"{self.root}: {POINTER_NAME} names {version.name}, which is incomplete or missing")
        return version

    def require_current(self) -> Path:
        version = self.current_version()
        if version is None:
            raise IndexStoreError(f"{self.root} holds no st-pooling index (no {POINTER_NAME} file); build one first")
        return version

    def check_writable(self, overwrite: bool) -> None:
        """Refuse to build into a folder holding someone's files, or over an index unless ``overwrite``."""
        if self.root.exists() and not self.root.is_dir():
            raise IndexStoreError(f"{self.root} is a file; give a folder path for the index")
        if self.current_version() is not None:
            if not overwrite:
                raise IndexStoreError(f"{self.root} already holds an index; pass overwrite=True (--overwrite) "
                                      "to replace it, or add documents to it instead")
            return
        strangers = [p.name for p in self.root.iterdir() if not p.name.startswith(_STAGING_PREFIX)] \
            if self.root.is_dir() else []
        if strangers:
            raise IndexStoreError(f"{self.root} is not empty and is not an st-pooling index (it holds "
                                  f"{strangers[:3]}); choose a new or empty folder")

    def stage(self) -> Path:
        """A fresh staging folder inside the root, to be filled and then committed or discarded."""
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f"{_STAGING_PREFIX}{uuid.uuid4().hex[:12]}"
        staging.mkdir()
        return staging

    def commit(self, staging: Path) -> Path:
        """Make ``staging`` the live version atomically, then remove older versions and stale staging."""
        _fsync_tree(staging)
        previous = self.current_version()
        number = int(previous.name[1:]) + 1 if previous is not None else 1
        version = self.root / f"v{number:06d}"
        os.replace(staging, version)
        pointer_tmp = self.root / f"{POINTER_NAME}.{uuid.uuid4().hex[:8]}.tmp"
        with pointer_tmp.open("w", encoding="utf-8") as handle:
            handle.write(version.name + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(pointer_tmp, self.root / POINTER_NAME)
        _fsync_dir(self.root)
        for entry in self.root.iterdir():
            stale_version = entry.is_dir() and entry.name.startswith("v") and entry != version
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


def read_metadata(version: Path) -> dict:
    try:
        return json.loads((version / METADATA_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise IndexStoreError(f"cannot read {version / METADATA_FILE}: {error}") from None


class DocumentWriter:
    """Appends documents to ``documents.jsonl`` and remembers row offsets and faiss ids (8 + 8 bytes a row)."""

    def __init__(self, version: Path, existing_from: Path | None = None) -> None:
        self.version = version
        self.offsets = array("q")
        self.faiss_ids = array("q")
        target = version / DOCUMENTS_FILE
        if existing_from is not None:
            shutil.copyfile(existing_from / DOCUMENTS_FILE, target)
            self.offsets.extend(np.load(existing_from / OFFSETS_FILE)[:-1].tolist())
            self.faiss_ids.extend(np.load(existing_from / FAISS_IDS_FILE).tolist())
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
    """Random access to stored documents by faiss id, reading only the rows asked for."""

    def __init__(self, version: Path) -> None:
        self.path = version / DOCUMENTS_FILE
        self.offsets = np.load(version / OFFSETS_FILE)
        self.faiss_ids = np.load(version / FAISS_IDS_FILE)
        self._order = np.argsort(self.faiss_ids, kind="stable")
        self._ids: list[str] | None = None
        if len(self.offsets) != len(self.faiss_ids) + 1:
            raise IndexStoreError(f"{version}: {OFFSETS_FILE} and {FAISS_IDS_FILE} disagree on the row count")

    def __len__(self) -> int:
        return len(self.faiss_ids)

    def rows_for(self, faiss_ids: np.ndarray) -> np.ndarray:
        """Row numbers of the given faiss ids."""
        positions = np.searchsorted(self.faiss_ids, faiss_ids, sorter=self._order)
        rows = self._order[np.minimum(positions, len(self._order) - 1)]
        if not np.array_equal(self.faiss_ids[rows], faiss_ids):
            raise IndexStoreError(f"{self.path.parent}: the faiss index returned ids missing from the document table")
        return rows

    def read_rows(self, rows: np.ndarray) -> list[Document]:
        documents = []
        with self.path.open("rb") as handle:
            for row in rows.tolist():
                handle.seek(int(self.offsets[row]))
                record = json.loads(handle.read(int(self.offsets[row + 1] - self.offsets[row])))
                documents.append(Document(id=record["id"], text=record["text"], title=record.get("title", "")))
        return documents

    def ids_of_rows(self, rows: np.ndarray) -> list[str]:
        """The user's ids of the given rows (the id column is read once, then kept)."""
        if self._ids is None:
            self._ids = list(self.iter_ids())
        return [self._ids[row] for row in rows.tolist()]

    def iter_ids(self) -> Iterator[str]:
        with self.path.open("rb") as handle:
            for line in handle:
                yield json.loads(line)["id"]
