"""Reading CSV text safely: the encoding, NUL, undecodable-byte and cell-size rules for every
CSV reader (the SFTP import in orchestration/parsers.py, the API upload in api/number_bulk.py).

* ``check_encoding(name)``: a caller-chosen encoding must be a real text encoding (not
  ``rot13``, ``hex``, ``undefined`` or an escape codec that rewrites backslashes).
* ``detect_encoding(sample)`` / ``check_sample(text)``: the SFTP path's encoding guess and
  its "this is not a text file at all" refusal (control characters or NULs everywhere).
* ``is_clean(raw, encoding)`` + ``open_text(raw, encoding)`` + ``read_records(text,
  delimiter, clean=...)``: ``(line, fields)`` per record, where ``line`` is the record's
  first physical line. A record that holds a NUL byte or bytes that are not valid in the
  encoding, or a cell over ``MAX_CELL`` characters, comes back as an ``Unreadable`` (line
  and reason), so that row alone is rejected and the rest of the file loads; with
  ``strict=True`` the undecodable and over-long cases raise ``CsvInputError`` instead (the
  API, whose caller picks the encoding and can retry).

Speed: the per-line checks cost a Python step per line (about half the parse time), so
``is_clean`` first scans the bytes in C-speed blocks (decode + NUL search); a clean file, the
usual case, is then read straight through the csv module with only its cell limit checked.

Past ``MAX_UNREADABLE`` (1,000) broken rows the whole file is refused instead: that many
means the file, not a row, is broken - e.g. a CP1251 export whose first 64 KiB (where the
encoding is guessed) happened to be plain ASCII - and rejecting its rows one by one would
import a fraction of it.

An over-long cell is usually an unclosed quote that swallowed the lines after it: the csv
module stops at ``MAX_CELL`` characters and resumes at the next physical line, so the
reject names the whole span of lines it consumed; nothing in between is imported.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterator
from typing import IO

from models.phones import Unreadable

__all__ = [
    "MAX_CELL",
    "MAX_UNREADABLE",
    "CsvInputError",
    "check_encoding",
    "check_line",
    "check_sample",
    "detect_encoding",
    "is_clean",
    "open_text",
    "read_records",
]

MAX_CELL = 128 * 1024  # 131,072: the csv module's default field limit, kept explicit
_SHOWN = 200  # characters of a broken row shown in a reject report
MAX_UNREADABLE = 1000  # broken rows rejected one by one; one more refuses the whole file
_ERRORS = "numbase.unreadable"  # codec error handler: see _mark
# Codecs that decode bytes to text but not one character per character as written
# (utf-7 even reads "+7916..." as a base64 escape).
_NOT_CHARSETS = frozenset(
    {"undefined", "unicode-escape", "raw-unicode-escape", "idna", "punycode", "utf-7"}
)
_SURROGATE = re.compile("[\ud800-\udfff]")


class CsvInputError(ValueError):
    """The CSV cannot be read (strict mode); ``line`` is where, ``reason`` says why.

    ``undecodable`` tells a wrong encoding (the caller may retry with another) from a
    broken file.
    """

    def __init__(self, line: int, reason: str, *, undecodable: bool = False) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason
        self.undecodable = undecodable


def _mark(exc: UnicodeError) -> tuple[str, int]:
    """Undecodable bytes -> lone surrogates U+DC00+byte, which no valid decoding yields, so
    the row holding them is found after the csv module split the records."""
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    bad = exc.object[exc.start : exc.end]
    return "".join(chr(0xDC00 + b) for b in bad), exc.end


codecs.register_error(_ERRORS, _mark)


def check_encoding(name: str) -> str:
    """The codec's canonical name, or ValueError saying why ``name`` is no text encoding."""
    try:
        info = codecs.lookup(name)
    except (LookupError, TypeError, ValueError):
        raise ValueError(f"Unknown encoding {name!r}.") from None
    try:
        io.TextIOWrapper(io.BytesIO(), encoding=info.name)
    except LookupError:  # rot13, hex, base64, zlib...: str<->str or bytes<->bytes codecs
        raise ValueError(f"{name!r} is not a text encoding.") from None
    if info.name in _NOT_CHARSETS:
        raise ValueError(f"{name!r} is not a character set a CSV file can be written in.")
    return info.name


def detect_encoding(sample: bytes) -> str:
    """UTF-8 (with or without BOM), UTF-16 with a BOM, else CP1251 (from the first bytes)."""
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        return "cp1251"


def check_sample(text: str) -> None:
    """Refuse a file that is not text at all; a few stray NUL/control bytes are row rejects."""
    controls = sum(1 for c in text if c < " " and c not in "\t\r\n")
    if controls > max(8, len(text) // 100):
        if text.count("\x00") * 2 > controls:
            raise ValueError(
                "binary data: not a CSV/TSV text file (NUL bytes; UTF-16 needs a byte-order mark)"
            )
        raise ValueError("binary data: not a CSV/TSV text file (control characters)")


def is_clean(raw: IO[bytes], encoding: str, block: int = 1 << 20) -> bool:
    """Whether the rest of ``raw`` decodes without error and holds no NUL; rewinds ``raw``."""
    start = raw.tell()
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        while chunk := raw.read(block):
            if "\x00" in decoder.decode(chunk):
                return False
        decoder.decode(b"", final=True)  # a multi-byte sequence cut off at the end
    except UnicodeError:  # UnicodeDecodeError, or e.g. UTF-16 without a byte-order mark
        return False
    finally:
        raw.seek(start)
    return True


def open_text(raw: IO[bytes], encoding: str) -> io.TextIOWrapper:
    """Text over ``raw`` that never raises on undecodable bytes (read_records finds them)."""
    return io.TextIOWrapper(raw, encoding=encoding, errors=_ERRORS, newline="")  # type: ignore[arg-type]


def _shown(text: str) -> str:
    text = text.rstrip("\r\n").replace("\x00", "\\x00")
    text = _SURROGATE.sub(lambda m: f"\\x{ord(m[0]) - 0xDC00:02x}", text)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


_NUL = "contains a NUL byte (binary data in a text file)"


def _line_problem(line: str, encoding: str) -> str | None:
    if "\x00" in line:
        return _NUL
    if not line.isascii() and (m := _SURROGATE.search(line)):
        return f"not valid {encoding} text (byte 0x{ord(m[0]) - 0xDC00:02x})"
    return None


def check_line(line: str, number: int, encoding: str) -> None:
    """Raise CsvInputError if one physical line (e.g. a header) holds NUL or bad bytes."""
    if problem := _line_problem(line, encoding):
        raise CsvInputError(number, problem, undecodable=problem is not _NUL)


def read_records(
    text: IO[str],
    delimiter: str,
    *,
    encoding: str,
    first_line: int = 1,
    strict: bool = False,
    clean: bool = False,
    max_unreadable: int = MAX_UNREADABLE,
) -> Iterator[tuple[int, list[str] | Unreadable]]:
    """``(first physical line, fields or Unreadable)`` per CSV record (see the module doc).

    ``clean=True`` (``is_clean`` said so) skips the per-line NUL and decoding checks. More
    than ``max_unreadable`` broken rows raise ``CsvInputError``: past a few, it is the file
    (a wrong encoding guess, binary data) that is broken, not its rows.
    """
    bad: list[tuple[str, str]] = []  # (reason, shown text) of the record being read
    first: list[str | None] = [None]  # the record's first line, shown if the csv module gives up

    def lines() -> Iterator[str]:
        for line in text:
            if first[0] is None:
                first[0] = line
            # isascii() is O(1) and NUL a memchr: clean lines cost next to nothing.
            suspect = not line.isascii() or "\x00" in line
            if suspect and not bad and (problem := _line_problem(line, encoding)):
                bad.append((problem, _shown(line)))
            yield line

    csv.field_size_limit(MAX_CELL)
    reader = csv.reader(text if clean else lines(), delimiter=delimiter)
    start = first_line
    unreadable = 0
    while True:
        broken: Unreadable | None = None
        try:
            row = next(reader)
        except StopIteration:
            return
        except UnicodeDecodeError:  # only if a decoder ignores the error handler
            raise CsvInputError(start, f"not valid {encoding} text", undecodable=True) from None
        except UnicodeError as exc:  # e.g. "UTF-16 stream does not start with BOM": fatal
            raise CsvInputError(start, f"not {encoding} text: {exc}", undecodable=True) from None
        except csv.Error as exc:
            end = first_line - 1 + reader.line_num
            span = f"line {start}" if end == start else f"lines {start}-{end}"
            if "field larger" in str(exc):
                reason = f"a cell longer than {MAX_CELL} characters ({span}; an unclosed quote?)"
            else:
                reason = f"malformed CSV ({span}): {exc}"
            if strict:
                raise CsvInputError(start, reason) from None
            broken = Unreadable(reason, bad[0][1] if bad else _shown(first[0] or ""))
            next_start = end + 1
        else:
            if bad:
                if strict and bad[0][0] is not _NUL:
                    raise CsvInputError(start, bad[0][0], undecodable=True)
                broken = Unreadable(*bad[0])
            next_start = first_line + reader.line_num
        bad.clear()
        first[0] = None
        if broken is None:
            yield start, row
        else:
            unreadable += 1
            if unreadable > max_unreadable:
                raise CsvInputError(
                    start,
                    f"more than {max_unreadable} rows cannot be read (this one: {broken.reason}): "
                    f"the file is not clean {encoding} text; nothing was imported",
                )
            yield start, broken
        start = next_start
