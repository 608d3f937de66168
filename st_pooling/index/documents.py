"""The document store of an index: one SQLite table (stdlib ``sqlite3``), row number -> id, text, title.

Rows are numbered 0, 1, ... in the order their vectors were added, so a vector's position in the index is its row.
Random access by row (the primary key) and by id (a unique index) costs O(log n), and an ``add`` appends its rows in
one transaction: it writes the pages it changes and their rollback journal, not the whole table. Rows at or past the
committed count (``metadata.json``'s ``count``) belong to an add that did not finish; readers never see them and the
next writer deletes them.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from urllib.parse import quote

import numpy as np

from st_pooling.index.corpus import Document
from st_pooling.index.errors import CorpusError

DOCUMENTS_DB = "documents.sqlite"
_SCHEMA = ("CREATE TABLE documents (row INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, text TEXT NOT NULL, "
           "title TEXT NOT NULL)")
_CHUNK = 900  # stays under SQLite's limit of bound parameters a statement


class DocumentTable:
    """A writer's connection: ``append`` rows inside one transaction, then ``commit`` (or ``rollback``)."""

    def __init__(self, path: Path, committed: int, *, new: bool) -> None:
        self.path = path
        self._connection = sqlite3.connect(path, isolation_level=None, timeout=60)
        if new:  # a new store lives in a staging folder until the build commits: no journal needed
            self._connection.executescript(f"PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; {_SCHEMA};")
        else:
            self._connection.execute("PRAGMA synchronous=FULL")
            self._connection.execute("DELETE FROM documents WHERE row >= ?", (committed,))  # a dead add's rows
        self._connection.execute("BEGIN IMMEDIATE")
        self.count = committed

    def append(self, documents: list[Document]) -> None:
        start = self.count
        try:
            self._connection.executemany("INSERT INTO documents (row, id, text, title) VALUES (?, ?, ?, ?)",
                                         ((start + n, d.id, d.text, d.title) for n, d in enumerate(documents)))
        except sqlite3.IntegrityError:
            duplicate = next(d.id for d in documents if self.row_of(d.id) is not None)
            raise DuplicateIdError(duplicate) from None
        self.count += len(documents)

    def row_of(self, document_id: str) -> int | None:
        found = self._connection.execute("SELECT row FROM documents WHERE id = ?", (document_id,)).fetchone()
        return None if found is None else found[0]

    def append_table(self, other: Path, rows: int) -> None:
        """Append the first ``rows`` rows of another store (a shard), renumbered after this one's."""
        self._connection.execute("COMMIT")  # ATTACH cannot run inside a transaction
        self._connection.execute("ATTACH DATABASE ? AS shard", (f"file:{quote(str(other))}?mode=ro",))
        self._connection.execute("BEGIN IMMEDIATE")
        try:
            self._connection.execute("INSERT INTO documents (row, id, text, title) SELECT row + ?, id, text, title "
                                     "FROM shard.documents WHERE row < ? ORDER BY row", (self.count, rows))
        except sqlite3.IntegrityError:
            duplicate = self._connection.execute("SELECT id FROM shard.documents WHERE id IN "
                                                 "(SELECT id FROM main.documents) LIMIT 1").fetchone()
            raise DuplicateIdError(duplicate[0] if duplicate else "?", other) from None
        self._connection.execute("COMMIT")
        self._connection.execute("DETACH DATABASE shard")
        self._connection.execute("BEGIN IMMEDIATE")
        self.count += rows

    def commit(self) -> None:
        self._connection.execute("COMMIT")
        self._connection.close()

    def rollback(self) -> None:
        if self._connection.in_transaction:
            self._connection.execute("ROLLBACK")
        self._connection.close()


class DuplicateIdError(CorpusError):
    def __init__(self, document_id: str, source: Path | None = None) -> None:
        self.document_id = document_id
        where = f" (from {source})" if source else ""
        super().__init__(f"document id {document_id!r}{where} is already in the index; ids must be unique")


def _connect_for_reading(path: Path) -> sqlite3.Connection:
    """A connection that only reads; read-write where the folder allows, so that SQLite itself can roll back the
    journal of a writer that died mid-add (a read-only connection cannot), else read-only."""
    for mode in ("rw", "ro"):
        try:
            connection = sqlite3.connect(f"file:{quote(str(path))}?mode={mode}", uri=True, timeout=60,
                                         check_same_thread=False)
            connection.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
            return connection
        except sqlite3.OperationalError:
            if mode == "ro":
                raise
    raise AssertionError("unreachable")


class DocumentReader:
    """Read-only random access to the committed rows (``count`` of them) of a store."""

    def __init__(self, path: Path, count: int, damaged: Callable[[Path, str], Exception]) -> None:
        self.path, self.count, self._damaged = path, count, damaged
        if not path.is_file():
            raise damaged(path, "is missing")
        try:
            self._connection = _connect_for_reading(path)
            last = self._connection.execute("SELECT max(row) FROM documents").fetchone()[0]
        except sqlite3.Error as error:
            raise damaged(path, f"cannot be read by SQLite ({error}; truncated or corrupt)") from None
        if count and (last is None or last < count - 1):
            raise damaged(path, f"holds rows up to {last}, but the index has {count:,} rows (truncated or changed)")

    def __len__(self) -> int:
        return self.count

    def _query(self, sql: str, values: list) -> list[tuple]:
        try:
            return self._connection.execute(sql, values).fetchall()
        except sqlite3.Error as error:
            raise self._damaged(self.path, f"cannot be read by SQLite ({error}; corrupt)") from None

    def _rows(self, rows: np.ndarray, columns: str) -> dict[int, tuple]:
        wanted = sorted({int(r) for r in np.asarray(rows).reshape(-1).tolist()})
        found: dict[int, tuple] = {}
        for begin in range(0, len(wanted), _CHUNK):
            chunk = wanted[begin:begin + _CHUNK]
            query = f"SELECT row, {columns} FROM documents WHERE row IN ({','.join('?' * len(chunk))}) AND row < ?"
            for record in self._query(query, [*chunk, self.count]):
                found[record[0]] = record[1:]
        missing = [row for row in wanted if row not in found]
        if missing:
            raise self._damaged(self.path, f"lacks row {missing[0]} that the faiss index returned")
        return found

    def read_rows(self, rows: np.ndarray) -> list[Document]:
        found = self._rows(rows, "id, text, title")
        documents = []
        for row in np.asarray(rows).reshape(-1).tolist():
            document_id, text, title = found[row]
            if not all(isinstance(value, str) for value in (document_id, text, title)):
                raise self._damaged(self.path, f"row {row} does not hold an id, a text and a title as text (corrupt)")
            documents.append(Document(id=document_id, text=text, title=title))
        return documents

    def ids_of_rows(self, rows: np.ndarray) -> list[str]:
        found = self._rows(rows, "id")
        return [found[row][0] for row in np.asarray(rows).reshape(-1).tolist()]

    def known_ids(self, ids: Iterable[str]) -> set[str]:
        """Those of ``ids`` already stored (O(log n) each)."""
        ids, known = list(ids), set[str]()
        for begin in range(0, len(ids), _CHUNK):
            chunk = ids[begin:begin + _CHUNK]
            known.update(r[0] for r in self._query(
                f"SELECT id FROM documents WHERE id IN ({','.join('?' * len(chunk))}) AND row < ?", [*chunk, self.count]))
        return known

    def iter_ids(self) -> Iterator[str]:
        for (document_id,) in self._query("SELECT id FROM documents WHERE row < ? ORDER BY row", [self.count]):
            yield document_id

    def close(self) -> None:
        self._connection.close()
