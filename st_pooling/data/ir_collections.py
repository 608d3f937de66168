"""Loaders for the classic SMART-format retrieval test collections: Cranfield and CISI.

In the SMART format a record starts with ``.I <id>`` and holds fields that each start with a line
``.<letter>``: ``.T`` title, ``.A`` authors, ``.B`` source, ``.W`` text, ``.X`` cross references
(CISI), ``.K``/``.C`` keywords/classes (one CISI record).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from st_pooling.data.errors import DataFormatError, require_files
from st_pooling.data.text_files import parse_float, parse_int, read_text, split_lines
from st_pooling.data.types import RetrievalData

CRANFIELD_FILES = ["cran.all.1400", "cran.qry", "cranqrel"]
CISI_FILES = ["CISI.ALL", "CISI.QRY", "CISI.REL"]

# Cleverdon's relevance codes in cranqrel: 1 = complete answer ... 4 = minimum interest, 5 = none;
# -1 marks a judged non-relevant document. Mapped to nDCG gains where larger is more relevant.
CRANFIELD_GAINS = {1: 4, 2: 3, 3: 2, 4: 1}
CRANFIELD_NOT_RELEVANT = {-1, 5}

_FIELD_LINE = re.compile(r"^\.([A-Z])(?:\s+(\S+))?\s*$")


@dataclass
class SmartRecord:
    """One ``.I`` record: its id as written, the line it starts on, and its fields' text."""

    record_id: str
    line: int
    fields: dict[str, list[str]] = field(default_factory=dict)

    def text(self, name: str) -> str:
        """The field's text with whitespace normalised; a field that repeats is joined."""
        return " ".join(" ".join(self.fields.get(name, [])).split())


def parse_smart_file(file_path: Path) -> list[SmartRecord]:
    """Every record of a SMART-format file, in file order (CRLF or LF line endings)."""
    records: list[SmartRecord] = []
    current_field: list[str] | None = None
    for line_number, line in enumerate(split_lines(read_text(file_path, ("utf-8", "latin-1"))), start=1):
        match = _FIELD_LINE.match(line)
        if match and match.group(1) == "I":
            if match.group(2) is None:
                raise DataFormatError(file_path, "a '.I' line must carry the record id ('.I 12')", line_number)
            records.append(SmartRecord(match.group(2), line_number))
            current_field = None
        elif match and match.group(2) is None:
            if not records:
                message = f"field '.{match.group(1)}' appears before the first '.I' record"
                raise DataFormatError(file_path, message, line_number)
            current_field = records[-1].fields.setdefault(match.group(1), [])
            current_field.append("")
        elif line.strip():
            if current_field is None:
                raise DataFormatError(
                    file_path,
                    f"text outside any field: expected a '.I'/'.T'/'.W' ... line, found {line[:60]!r}",
                    line_number,
                )
            current_field[-1] += " " + line.strip()
    if not records:
        raise DataFormatError(file_path, "no '.I' records found; is this a SMART-format file?")
    return records


def _numeric_id(record: SmartRecord, file_path: Path) -> str:
    """The record id without leading zeros ('001' -> '1')."""
    return str(parse_int(record.record_id, file_path, record.line, "the '.I' record id"))


def _title_and_text(record: SmartRecord) -> str:
    """Title and text in one string; the title is not repeated when the text already starts with it
    (Cranfield's ``.W`` repeats the title, CISI's does not)."""
    title, body = record.text("T"), record.text("W")
    if not title or body.startswith(title):
        return body or title
    return f"{title}. {body}" if body else title


def _read_documents(file_path: Path) -> dict[str, str]:
    """Document id -> title and text. A record may be empty: Cranfield's 471 and 995 have no text."""
    documents: dict[str, str] = {}
    for record in parse_smart_file(file_path):
        doc_id = _numeric_id(record, file_path)
        if doc_id in documents:
            raise DataFormatError(file_path, f"record id {doc_id} appears twice", record.line)
        documents[doc_id] = _title_and_text(record)
    return documents


def _judgements(path: Path, columns: tuple[str, ...], queries: Mapping[str, str], corpus: Mapping[str, str],
                corpus_file: str, unknown_query: Callable[[str], str],
                query_number: str) -> Iterator[tuple[int, str, str, list[str]]]:
    """(line number, query id, document id, cells) of each row of a whitespace-separated relevance file whose
    ``columns`` start with the query and the document; a row of another width, a number that is not one, an unknown
    query (``unknown_query`` says why) or an unknown document is refused naming the file and line."""
    for line_number, line in enumerate(split_lines(read_text(path, ("utf-8",))), start=1):
        cells = line.split()
        if not cells:
            continue
        if len(cells) != len(columns):
            message = f"expected {len(columns)} columns ({', '.join(columns)}), found {len(cells)}"
            raise DataFormatError(path, message, line_number)
        query = str(parse_int(cells[0], path, line_number, f"the query {query_number}"))
        doc = str(parse_int(cells[1], path, line_number, "the document id"))
        if query not in queries:
            raise DataFormatError(path, unknown_query(query), line_number)
        if doc not in corpus:
            raise DataFormatError(path, f"document {doc} is not in {corpus_file}", line_number)
        yield line_number, query, doc, cells


def load_cranfield(path: str | Path) -> RetrievalData:
    """Cranfield 1400: 1,400 aerodynamics abstracts, 225 queries, graded judgments.

    Quirks handled: CRLF line endings; the ``.I`` numbers in ``cran.qry`` are not 1..225 but
    ``cranqrel`` refers to queries by position, so query ids are the positions "1".."225";
    the relevance codes are inverted (1 = most relevant ... 4 = least) and become gains
    1 -> 4, 2 -> 3, 3 -> 2, 4 -> 1; code -1 (and 5, no interest) means not relevant and is left
    out of the qrels.
    """
    folder = require_files(path, CRANFIELD_FILES, "Cranfield")
    corpus = _read_documents(folder / "cran.all.1400")
    query_records = parse_smart_file(folder / "cran.qry")
    queries = {str(position): record.text("W") for position, record in enumerate(query_records, start=1)}
    qrels_path = folder / "cranqrel"
    qrels: dict[str, dict[str, int]] = {}
    rows = _judgements(qrels_path, ("query", "document", "code"), queries, corpus, "cran.all.1400",
                       lambda query: f"query position {query} is outside 1..{len(queries)}", "position")
    for line_number, query, doc, cells in rows:
        code = parse_int(cells[2], qrels_path, line_number, "the relevance code")
        if code in CRANFIELD_NOT_RELEVANT:
            continue
        if code not in CRANFIELD_GAINS:
            raise DataFormatError(qrels_path, f"relevance code {code} is not one of -1, 1, 2, 3, 4, 5", line_number)
        judged = qrels.setdefault(query, {})
        judged[doc] = max(judged.get(doc, 0), CRANFIELD_GAINS[code])
    return RetrievalData(corpus=corpus, queries=queries, qrels=qrels)


def load_cisi(path: str | Path) -> RetrievalData:
    """CISI: 1,460 library-science abstracts, 112 queries of which the 76 with judgments are kept.

    Documents and queries are title + text (queries 58-112 are abstracts with a title). ``CISI.REL``
    rows are ``query document 0 0.000000``: binary judgments, each a gain of 1.
    """
    folder = require_files(path, CISI_FILES, "CISI")
    corpus = _read_documents(folder / "CISI.ALL")
    all_queries = {
        _numeric_id(record, folder / "CISI.QRY"): _title_and_text(record)
        for record in parse_smart_file(folder / "CISI.QRY")
    }
    rel_path = folder / "CISI.REL"
    qrels: dict[str, dict[str, int]] = {}
    rows = _judgements(rel_path, ("query", "document", "0", "0.000000"), all_queries, corpus, "CISI.ALL",
                       lambda query: f"query {query} is not in CISI.QRY", "id")
    for line_number, query, doc, cells in rows:
        parse_float(cells[3], rel_path, line_number, "the score column")
        qrels.setdefault(query, {})[doc] = 1
    queries = {query: text for query, text in all_queries.items() if query in qrels}
    return RetrievalData(corpus=corpus, queries=queries, qrels=qrels)
