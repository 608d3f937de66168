"""Corpus readers: jsonl, csv/tsv and plain text, streamed one document at a time.

Every reader is re-iterable (each ``iter()`` re-opens the file), so a corpus can be
scanned once for validation and read again for encoding without holding its texts.
"""
from __future__ import annotations

import csv
import json
import sys
from typing import cast
from collections.abc import Container, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from st_pooling.index.errors import CorpusError, CorpusFormatError

CORPUS_FORMATS = ("jsonl", "csv", "tsv", "text")
_SUFFIX_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".txt": "text"}
_INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class Document:
    """One corpus entry. ``id`` is kept exactly as the user wrote it (as a string)."""

    id: str
    text: str
    title: str = ""

    @property
    def encoding_text(self) -> str:
        """The text that is embedded: title and text joined by a space, as mteb does."""
        return f"{self.title} {self.text}".strip() if self.title else self.text


@dataclass(frozen=True)
class CorpusSummary:
    """What a validation pass learned: how many documents and whether every id is an int64."""

    count: int
    ids_are_int64: bool


def is_canonical_int64(document_id: str) -> bool:
    """True when ``document_id`` round-trips through a signed 64-bit integer unchanged ("7", not "007")."""
    try:
        value = int(document_id)
    except ValueError:
        return False
    return str(value) == document_id and -_INT64_MAX - 1 <= value <= _INT64_MAX


class CorpusFile:
    """A corpus on disk, read lazily. Formats: jsonl, csv, tsv (header with ``id``, ``text``,
    optional ``title``) and text (one document a line, the 1-based line number as its id)."""

    def __init__(self, path: str | Path, corpus_format: str | None = None, encoding: str = "utf-8") -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise CorpusError(f"corpus file {self.path} does not exist or is not a file")
        self.format = corpus_format or _format_from_suffix(self.path)
        if self.format not in CORPUS_FORMATS:
            raise CorpusError(f"unknown corpus format {self.format!r}; use one of {', '.join(CORPUS_FORMATS)}")
        self.encoding = encoding

    def __iter__(self) -> Iterator[Document]:
        readers = {"jsonl": self._read_jsonl, "csv": self._read_table, "tsv": self._read_table, "text": self._read_text}
        try:
            yield from readers[self.format]()
        except UnicodeDecodeError as error:
            raise self._decoding_error(error) from None

    def _decoding_error(self, error: UnicodeDecodeError) -> CorpusFormatError:
        """The first line that does not decode, with its byte position, as a CorpusFormatError."""
        offset = 0
        with self.path.open("rb") as handle:
            for line_number, raw in enumerate(handle, start=1):
                try:
                    raw.decode(self.encoding)
                except UnicodeDecodeError as bad:
                    return CorpusFormatError(
                        self.path, f"expected {self.encoding} text, found the byte 0x{raw[bad.start]:02x} at byte "
                                   f"{bad.start + 1} of the line (offset {offset + bad.start} in the file), which is "
                                   f"not valid {self.encoding} ({bad.reason}); save the file as {self.encoding}",
                        line_number)
                offset += len(raw)
        return CorpusFormatError(self.path, f"expected {self.encoding} text: {error}")

    def __repr__(self) -> str:
        return f"CorpusFile({str(self.path)!r}, format={self.format!r})"

    def _where(self, line_number: int) -> str:
        return f"{self.path}, line {line_number}"

    def _read_text(self) -> Iterator[Document]:
        with self.path.open(encoding=self.encoding, newline=None) as handle:
            for line_number, line in enumerate(handle, start=1):
                text = line.rstrip("\n")
                if not text.strip():
                    raise CorpusError(
                        f"{self._where(line_number)} is empty: a plain-text corpus holds one document a line and "
                        "uses the line number as its id; remove empty lines (ids after them shift) or use jsonl "
                        "with explicit ids"
                    )
                yield Document(id=str(line_number), text=text)

    def _read_jsonl(self) -> Iterator[Document]:
        with self.path.open(encoding=self.encoding) as handle:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    raise CorpusError(f"{self._where(line_number)} is empty; a jsonl corpus needs one JSON object a line")
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as error:
                    raise CorpusError(f"{self._where(line_number)} is not valid JSON ({error.msg})") from None
                if not isinstance(row, dict):
                    raise CorpusError(f"{self._where(line_number)} is not a JSON object with 'id' and 'text'")
                yield _document_from_row(row, self._where(line_number))

    def _read_table(self) -> Iterator[Document]:
        csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
        dialect = {"delimiter": ","} if self.format == "csv" else {"delimiter": "\t", "quoting": csv.QUOTE_NONE}
        separator = "comma" if self.format == "csv" else "tab"
        with self.path.open(encoding=self.encoding, newline="") as handle:
            reader = csv.reader(handle, **dialect)
            header: list[str] = next(reader, [])
            missing = {"id", "text"} - set(header)
            if missing:
                raise CorpusError(
                    f"{self.path}: the header row must name columns 'id' and 'text' (and optionally 'title'); "
                    f"missing {sorted(missing)}, found {header}"
                )
            for row in reader:
                if not row:
                    continue  # a blank line holds no document
                if len(row) != len(header):
                    raise CorpusFormatError(
                        self.path, f"expected {len(header)} {separator}-separated fields like the header {header}, "
                                   f"found {len(row)}: " + ("quote a text that holds commas" if separator == "comma"
                                                             else "tsv is read without quoting, so a text must not "
                                                                  "hold a tab") + " (or use jsonl)", reader.line_num)
                yield _document_from_row(dict(zip(header, row)), self._where(reader.line_num))


def _format_from_suffix(path: Path) -> str:
    corpus_format = _SUFFIX_FORMATS.get(path.suffix.lower())
    if corpus_format is None:
        raise CorpusError(
            f"cannot tell the format of {path} from its suffix {path.suffix!r}; name it .jsonl/.csv/.tsv/.txt "
            f"or pass the format explicitly (one of {', '.join(CORPUS_FORMATS)})"
        )
    return corpus_format


def _document_from_row(row: Mapping[str, object], where: str) -> Document:
    raw_id = row.get("id", row.get("_id"))
    if raw_id is None or (isinstance(raw_id, str) and not raw_id.strip()):
        raise CorpusError(f"{where}: the document has no 'id'")
    if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)):
        raise CorpusError(f"{where}: the id must be a string or an integer, got {raw_id!r}")
    text, title = row.get("text"), row.get("title") or ""
    if not isinstance(text, str) or not isinstance(title, str):
        raise CorpusError(f"{where}: 'text' (and 'title' if present) must be strings")
    if not text.strip() and not title.strip():
        raise CorpusError(f"{where}: document {raw_id!r} has empty text; remove it or give it text")
    return Document(id=str(raw_id), text=text, title=title)


def documents_from_mapping(corpus: Mapping[str, object]) -> list[Document]:
    """Documents from a ``{id: text}`` or ``{id: {"text": ..., "title": ...}}`` mapping (RetrievalData.corpus)."""
    documents = []
    for doc_id, value in corpus.items():
        row: dict[str, object] = {"text": value} if isinstance(value, str) else dict(cast(Mapping[str, object], value))
        documents.append(_document_from_row({**row, "id": doc_id}, f"corpus entry {doc_id!r}"))
    return documents


CorpusLike = str | Path | Mapping[str, object] | Iterable[Document]


def as_documents(corpus: CorpusLike) -> Iterable[Document]:
    """Turn a path, an id->text mapping or a re-iterable of Documents into a re-iterable of Documents."""
    if isinstance(corpus, (str, Path)):
        return CorpusFile(corpus)
    if isinstance(corpus, Mapping):
        return documents_from_mapping(corpus)
    if iter(corpus) is corpus:
        raise TypeError(
            "the corpus is a one-shot iterator, but it is read twice (validate, then encode); "
            "pass a list of Documents, a mapping or a file path instead"
        )
    return corpus


def scan_corpus(documents: Iterable[Document], known_ids: Container[str] | None = None) -> CorpusSummary:
    """Validate a corpus in one streaming pass (only ids are kept): it must be non-empty and have no
    duplicate ids, neither within itself nor against ``known_ids`` (the ids already in an index)."""
    seen: set[str] = set()
    all_int64 = True
    for document in documents:
        if not isinstance(document, Document):
            raise TypeError(f"corpus items must be st_pooling.index.Document, got {type(document).__name__}")
        if document.id in seen:
            raise CorpusError(f"duplicate document id {document.id!r}; every document needs its own id")
        if known_ids is not None and document.id in known_ids:
            raise CorpusError(f"document id {document.id!r} is already in the index; ids must be unique")
        seen.add(document.id)
        all_int64 = all_int64 and is_canonical_int64(document.id)
    if not seen:
        raise CorpusError("the corpus is empty: there is nothing to index")
    return CorpusSummary(count=len(seen), ids_are_int64=all_int64)
