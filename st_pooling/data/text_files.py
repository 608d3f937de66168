"""Reading text files the way these old benchmark files need: explicit encodings, LF-only line splits."""

from __future__ import annotations

from pathlib import Path

from st_pooling.data.errors import DataFormatError


def decode_bytes(raw: bytes, encodings: tuple[str, ...] = ("utf-8", "latin-1")) -> str:
    """Decode with the first encoding that works (latin-1 as the last resort decodes any byte string)."""
    for encoding in encodings[:-1]:
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return raw.decode(encodings[-1])


def read_text(path: Path, encodings: tuple[str, ...] = ("utf-8", "latin-1")) -> str:
    """Read a whole file, trying each encoding in turn; bytes none of them decodes are a DataFormatError naming the
    file, line and byte."""
    raw = path.read_bytes()
    try:
        return decode_bytes(raw, encodings)
    except UnicodeDecodeError as error:
        line = raw[:error.start].count(b"\n") + 1
        raise DataFormatError(path, f"byte {error.start} is not valid {error.encoding} ({error.reason}): save the "
                                    f"file as {' or '.join(encodings)}", line=line) from None


def split_lines(text: str) -> list[str]:
    """Split on LF only, dropping a trailing CR (CRLF files) and the empty piece after a final newline.

    ``str.splitlines`` is not used on purpose: it also splits on U+0085 (NEL), which occurs inside
    latin-1 decoded sentences of the MR data set and would cut them in two.
    """
    lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def parse_float(value: str, path: Path, line: int, what: str) -> float:
    """Parse a float cell, raising a DataFormatError that names the file, line and column meaning."""
    try:
        number = float(value)
    except ValueError:
        raise DataFormatError(path, f"expected a number for {what}, found {value!r}", line) from None
    if number != number or number in (float("inf"), float("-inf")):
        raise DataFormatError(path, f"expected a finite number for {what}, found {value!r}", line)
    return number


def parse_int(value: str, path: Path, line: int, what: str) -> int:
    """Parse an integer cell, raising a DataFormatError that names the file, line and column meaning."""
    try:
        return int(value)
    except ValueError:
        raise DataFormatError(path, f"expected an integer for {what}, found {value!r}", line) from None
