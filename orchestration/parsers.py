"""Number files -> bounded `RowChunk`s for the bulk loader.

CSV/TSV: encoding (UTF-8 with or without BOM, UTF-16 with BOM, else CP1251) and delimiter
(`, ; TAB |`) are detected from the first 64 KiB; quoted fields (embedded delimiters, quotes,
newlines) are handled by the csv module; rows stream in chunks of `chunk_rows`, so memory does
not depend on the file size. The text rules live in models/csv_rows.py: a record with a NUL
byte, bytes that are not valid in the detected encoding, or a cell over 131,072 characters is
rejected alone (its line and reason in the rejects report) and the rest of the file loads; a
first row (the header) that cannot be read, or more than 1,000 broken rows, refuse the file.

XLSX/XLS: the first sheet through python-calamine, after a zip-bomb check for XLSX. The phone
column is found by a column map, else a header alias (English/Russian), else a header-less
first row whose cell is a phone number. Every other column is kept as an attribute. A file that
cannot be read as a whole raises `ParseError` with a reason.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import re
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.bulk import RowChunk
from models.csv_rows import (
    CsvInputError,
    check_sample,
    detect_encoding,
    is_clean,
    open_text,
    read_records,
)
from models.phones import LOST_DIGITS, InvalidPhone, Unreadable, normalize_phone

CHUNK_ROWS = 50_000
SAMPLE_BYTES = 64 * 1024
DELIMITERS = (",", ";", "\t", "|")
# Zip-bomb limits for XLSX: real sheets compress 5-30x; a bomb compresses thousands of times.
MAX_UNCOMPRESSED = 1 << 30
MAX_RATIO = 200
RATIO_FLOOR = 32 << 20  # ratios only matter for entries bigger than this

# Normalised header -> priority (lower wins when several columns match).
PHONE_ALIASES: dict[str, int] = {
    name: i
    for i, name in enumerate(
        [
            "phone",
            "phone_number",
            "phonenumber",
            "msisdn",
            "mobile",
            "mobile_phone",
            "cell",
            "cellphone",
            "telephone",
            "tel",
            "number",
            "phone_no",
            "телефон",
            "номер_телефона",
            "телефон_клиента",
            "мобильный",
            "мобильный_телефон",
            "сотовый",
            "тел",
            "номер",
        ]
    )
}


class ParseError(ValueError):
    """The file cannot be read as a number list; `reason` says why (shown to the user)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Layout:
    phone_index: int
    attribute_names: tuple[tuple[int, str], ...]  # (column index, attribute name)
    header_row: bool  # False: the first row is data


def normalise_header(name: object) -> str:
    text = str(name or "").replace("\ufeff", "").strip().lower()
    return re.sub(r"[\s\-.]+", "_", text).strip("_")


def detect_kind(path: Path) -> str:
    with path.open("rb") as fh:
        head = fh.read(8)
    if not head:
        raise ParseError("empty file")
    if head.startswith(b"PK\x03\x04"):
        return "xlsx"
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return "xls"
    return "csv"


def parse_file(
    path: Path,
    *,
    column_map: Mapping[str, Any] | None = None,
    chunk_rows: int = CHUNK_ROWS,
    region: str = "RU",
) -> Iterator[RowChunk]:
    """Chunks of rows from a CSV/TSV/XLSX/XLS file (kind sniffed from the content)."""
    kind = detect_kind(path)
    if kind == "csv":
        return _csv_chunks(path, column_map or {}, chunk_rows, region)
    if kind == "xlsx":
        check_zip_bomb(path)
    return _sheet_chunks(path, column_map or {}, chunk_rows, region)


# --- layout ---------------------------------------------------------------------------------


def find_layout(first_row: list[Any], column_map: Mapping[str, Any], region: str) -> Layout:
    headers = [normalise_header(h) for h in first_row]
    phone: int | None = None
    if "phone" in column_map:
        phone = _mapped_column(column_map["phone"], first_row, headers)
    else:
        matches = [(PHONE_ALIASES[h], i) for i, h in enumerate(headers) if h in PHONE_ALIASES]
        if matches:
            phone = min(matches)[1]
    if phone is not None:
        renames = {normalise_header(v): k for k, v in column_map.items() if k != "phone"}
        attrs = []
        for i, h in enumerate(first_row):
            if i == phone:
                continue
            key = normalise_header(h)
            name = renames.get(key) or str(h).replace("\ufeff", "").strip() or f"column_{i + 1}"
            attrs.append((i, name))
        return Layout(phone, tuple(attrs), header_row=True)
    # No header we know: accept a header-less file whose first row holds a phone number.
    for i, cell in enumerate(first_row):
        try:
            normalize_phone(cell, region)  # type: ignore[arg-type]
        except InvalidPhone as exc:
            if exc.reason != LOST_DIGITS:  # a number a spreadsheet cut is still the column
                continue
        except TypeError:
            continue
        attrs = tuple((j, f"column_{j + 1}") for j in range(len(first_row)) if j != i)
        return Layout(i, attrs, header_row=False)
    shown = ", ".join(repr(str(h)) for h in first_row[:20]) or "(nothing)"
    raise ParseError(
        f"no phone column: the first row has {shown}; expected a header such as phone, "
        "phone_number, number, msisdn, телефон or номер, or a column_map {'phone': '<header>'}"
    )


def _mapped_column(spec: Any, first_row: list[Any], headers: list[str]) -> int:
    if isinstance(spec, int) or (isinstance(spec, str) and spec.strip().isdigit()):
        index = int(spec) - 1  # 1-based, as a user counts columns
        if not 0 <= index < len(first_row):
            raise ParseError(
                f"column_map phone column {spec} is outside the {len(first_row)} columns"
            )
        return index
    wanted = normalise_header(spec)
    if wanted in headers:
        return headers.index(wanted)
    raise ParseError(f"column_map names phone column {spec!r}, which is not in the header")


def _attributes(row: list[Any], layout: Layout) -> dict[str, Any] | None:
    out = {}
    for i, name in layout.attribute_names:
        if i < len(row):
            value = _json_value(row[i])
            if value is not None and value != "":
                out[name] = value
    return out or None


def _json_value(value: Any) -> Any:
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return int(value) if value.is_integer() and abs(value) < 2**53 else value
    if isinstance(value, dt.date | dt.time | dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    return value


def _chunked_rows(
    rows: Iterable[tuple[int, list[Any]]], layout: Layout, chunk_rows: int
) -> Iterator[RowChunk]:
    phones: list[Any] = []
    lines: list[int] = []
    attrs: list[dict[str, Any] | None] | None = [] if layout.attribute_names else None
    p = layout.phone_index
    total = 0
    for line, row in rows:
        if type(row) is Unreadable:  # the loader rejects it alone, with its reason
            cell: Any = row
        else:
            cell = row[p] if p < len(row) else None
            if (cell is None or cell == "") and all(c is None or c == "" for c in row):
                continue  # blank line
        phones.append(cell)
        lines.append(line)
        if attrs is not None:
            attrs.append(None if cell is row else _attributes(row, layout))
        if len(phones) >= chunk_rows:
            total += len(phones)
            yield RowChunk(phones, lines, attrs)
            phones, lines = [], []
            attrs = [] if attrs is not None else None
    total += len(phones)
    if total == 0:
        raise ParseError("header only: the file has no data rows")
    if phones:
        yield RowChunk(phones, lines, attrs)


# --- CSV ------------------------------------------------------------------------------------


def _check_text(text: str) -> None:
    try:
        check_sample(text)
    except ValueError as exc:
        raise ParseError(str(exc)) from None


def detect_delimiter(text: str) -> str:
    """The candidate giving the most columns consistently over the sample's first lines."""
    lines = text.splitlines()
    if len(lines) > 1 and not text.endswith(("\n", "\r")):
        lines = lines[:-1]  # the sample's last line may be cut short
    lines = [ln for ln in lines[:50] if ln.strip()]
    best, best_score = ",", (0, 0.0)
    for delim in DELIMITERS:
        try:
            counts = [len(r) for r in csv.reader(lines, delimiter=delim)]
        except csv.Error:
            continue
        if not counts:
            continue
        mode = max(set(counts), key=counts.count)
        share = counts.count(mode) / len(counts)
        if mode > 1 and share >= 0.8 and (mode, share) > best_score:
            best, best_score = delim, (mode, share)
    return best


def _csv_chunks(
    path: Path, column_map: Mapping[str, Any], chunk_rows: int, region: str
) -> Iterator[RowChunk]:
    with path.open("rb") as raw:
        sample = raw.read(SAMPLE_BYTES)
    encoding = detect_encoding(sample)
    text = sample.decode(encoding, errors="replace")
    _check_text(text)
    delimiter = detect_delimiter(text)
    with path.open("rb") as raw_fh:
        clean = is_clean(raw_fh, encoding)
        fh = open_text(raw_fh, encoding)
        rows = read_records(fh, delimiter, encoding=encoding, clean=clean)
        try:
            first_line, first = next(rows)
            while type(first) is not Unreadable and not any(c.strip() for c in first):
                first_line, first = next(rows)  # leading blank lines
            if type(first) is Unreadable:
                # Without the first row there is no telling header from data or which column
                # holds the phone: refuse rather than guess.
                raise ParseError(
                    f"line {first_line}: {first.reason}; the first row (the header, or the "
                    "first number of a file without one) must be readable"
                )
            layout = find_layout(first, column_map, region)
            if not layout.header_row:
                rows = _prepend((first_line, first), rows)
            yield from _chunked_rows(rows, layout, chunk_rows)
        except StopIteration:
            raise ParseError("empty file: no rows") from None
        except CsvInputError as exc:  # the file as a whole cannot be read: the load rolls back
            raise ParseError(str(exc)) from None


def _prepend(first: tuple[int, list[Any]], rest: Iterator[tuple[int, list[Any]]]) -> Iterator:
    yield first
    yield from rest


# --- Excel ----------------------------------------------------------------------------------


def check_zip_bomb(path: Path) -> None:
    """Refuse archives that would inflate beyond what any real workbook needs."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise ParseError(f"not a readable XLSX workbook: {exc}") from None
    total = sum(i.file_size for i in infos)
    if total > MAX_UNCOMPRESSED:
        raise ParseError(
            f"refused: the XLSX would inflate to {total / 2**20:.0f} MiB "
            f"(limit {MAX_UNCOMPRESSED >> 20} MiB) - a zip bomb or not a workbook"
        )
    for info in infos:
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > RATIO_FLOOR and ratio > MAX_RATIO:
            raise ParseError(
                f"refused: {info.filename} compresses {ratio:.0f}:1 (limit {MAX_RATIO}:1) "
                "- a zip bomb, not a workbook"
            )
    if not any(i.filename.startswith("xl/") for i in infos):
        raise ParseError("not an XLSX workbook: the archive has no xl/ part")


def _sheet_chunks(
    path: Path, column_map: Mapping[str, Any], chunk_rows: int, region: str
) -> Iterator[RowChunk]:
    from python_calamine import CalamineError, CalamineWorkbook

    try:
        workbook = CalamineWorkbook.from_path(str(path))
        if not workbook.sheet_names:
            raise ParseError("the workbook has no sheets")
        sheet = workbook.get_sheet_by_index(0)
        rows = sheet.iter_rows()
        numbered = ((n, list(r)) for n, r in enumerate(rows, start=1))
        first_line, first = next(numbered, (0, []))
        while first and all(c in (None, "") for c in first):
            first_line, first = next(numbered, (0, []))
        if not first:
            raise ParseError("empty workbook: the first sheet has no rows")
        layout = find_layout(first, column_map, region)
        body = numbered if layout.header_row else _prepend((first_line, first), numbered)
        yield from _chunked_rows(body, layout, chunk_rows)
    except CalamineError as exc:
        raise ParseError(f"not a readable Excel workbook: {exc}") from None
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        if isinstance(exc, ParseError):
            raise
        raise ParseError(f"not a readable Excel workbook: {exc}") from None
