"""The format of the Russian numbering-plan registry extracts: `parse_registry` turns one file
into `Range`s or refuses it with file and line (docs/dialing-rules.md). models/dialing/registry.py
loads the ranges."""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from models.dialing.regions import match_region

# National numbers of +7 are 10 digits: a 3-digit ABC/DEF code and a 7-digit subscriber part.
_SUBSCRIBER_DIGITS = 7
_HEADER_KEYS = {
    "от": "from",
    "до": "to",
    "емкость": "capacity",
    "оператор": "operator",
    "регион": "region",
    "инн": "inn",
}
_REQUIRED = ("code", "from", "to", "operator", "region")


class RegistryFormatError(ValueError):
    """The file is not a registry extract; `.file` and `.line` say where."""

    def __init__(self, file: str, line: int | None, reason: str) -> None:
        where = f"{file}, line {line}" if line is not None else file
        super().__init__(f"{where}: {reason}")
        self.file, self.line, self.reason = file, line, reason


@dataclass(frozen=True)
class Range:
    prefix: int
    range_from: int  # national number (prefix * 10^7 + От)
    range_to: int
    operator: str
    region: str  # the subject's name when the curated table knows it, else as written
    region_raw: str
    zones: tuple[str, ...] | None  # None: the region is not in the curated table
    line: int


def _column(name: str) -> str | None:
    key = name.strip().lstrip("\ufeff").lower().replace("ё", "е")
    if key in _HEADER_KEYS:
        return _HEADER_KEYS[key]
    # "АВС/ DEF", "ABC/DEF", "DEF", "Код": Cyrillic and Latin letters both occur.
    latin = key.translate(str.maketrans("авсе", "abce"))
    if "def" in latin or "abc" in latin or key == "код":
        return "code"
    return None


def _sniff_encoding(raw: BinaryIO) -> str:
    """UTF-8 when the whole file decodes as UTF-8, else CP1251 (decided before parsing)."""
    dec = codecs.getincrementaldecoder("utf-8")()
    raw.seek(0)
    try:
        while block := raw.read(1 << 20):
            dec.decode(block)
        dec.decode(b"", final=True)
        enc = "utf-8-sig"
    except UnicodeDecodeError:
        enc = "cp1251"
    raw.seek(0)
    return enc


def _field(value: str) -> str:
    text = value.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1].replace('""', '"').strip()
    return text


def _int(value: str, what: str, name: str, line: int, digits: int | None = None) -> int:
    text = value.strip()
    if not text.isdigit() or (digits is not None and len(text) > digits):
        raise RegistryFormatError(name, line, f"{what} is not a number of the plan: {value!r}")
    return int(text)


def parse_registry(
    raw: BinaryIO, name: str, *, progress: Callable[[int], None] | None = None
) -> tuple[str, Iterator[Range]]:
    """(encoding, ranges) of one extract; the iterator raises RegistryFormatError on a bad line.
    `progress(bytes_read)` is called as the file is read."""
    encoding = _sniff_encoding(raw)
    return encoding, _ranges(raw, name, encoding, progress)


def _ranges(
    raw: BinaryIO, name: str, encoding: str, progress: Callable[[int], None] | None
) -> Iterator[Range]:
    text = io.TextIOWrapper(raw, encoding=encoding, newline="")
    # Extracts are not quoted CSV: operator names carry bare quotes (ПАО "МТС"), and no field
    # holds a semicolon. A field wrapped in quotes whole is unwrapped (_field).
    reader = csv.reader(text, delimiter=";", quoting=csv.QUOTE_NONE)
    header: dict[str, int] | None = None
    width = 0
    try:
        for row in reader:
            line = reader.line_num
            row = [_field(c) for c in row]
            if any("\x00" in c for c in row):
                raise RegistryFormatError(name, line, "contains NUL bytes: not a text file")
            if not any(row):
                continue
            if header is None:
                header = {}
                for i, col in enumerate(row):
                    key = _column(col)
                    if key is not None and key not in header:
                        header[key] = i
                missing = [k for k in _REQUIRED if k not in header]
                if missing:
                    raise RegistryFormatError(
                        name, line, f"header lacks {', '.join(missing)} (got {';'.join(row)!r})"
                    )
                width = len(row)
                continue
            if len(row) != width:
                raise RegistryFormatError(
                    name, line, f"{len(row)} fields where the header has {width}"
                )
            yield _range(row, header, name, line)
            if progress is not None and line % 10_000 == 0:
                progress(raw.tell())
    except csv.Error as exc:
        raise RegistryFormatError(name, reader.line_num, f"not CSV: {exc}") from None
    except UnicodeDecodeError:
        raise RegistryFormatError(
            name, reader.line_num + 1, "text is neither UTF-8 nor CP1251"
        ) from None
    if header is None:
        raise RegistryFormatError(name, None, "empty file: no header")
    if progress is not None:
        progress(raw.tell())


def _range(row: Sequence[str], header: dict[str, int], name: str, line: int) -> Range:
    code = _int(row[header["code"]], "АВС/DEF code", name, line, 3)
    lo = _int(row[header["from"]], "От", name, line, _SUBSCRIBER_DIGITS)
    hi = _int(row[header["to"]], "До", name, line, _SUBSCRIBER_DIGITS)
    if code < 100:
        raise RegistryFormatError(name, line, f"АВС/DEF code {code} is not three digits")
    if lo > hi:
        raise RegistryFormatError(name, line, f"От {lo} is after До {hi}")
    if "capacity" in header and row[header["capacity"]].strip():
        cap = _int(row[header["capacity"]], "Емкость", name, line)
        if cap != hi - lo + 1:
            raise RegistryFormatError(
                name, line, f"Емкость {cap} disagrees with От..До ({hi - lo + 1} numbers)"
            )
    operator = row[header["operator"]].strip()
    region_raw = row[header["region"]].strip()
    if not region_raw:
        raise RegistryFormatError(name, line, "Регион is empty")
    subject = match_region(region_raw)
    base = code * 10**_SUBSCRIBER_DIGITS
    return Range(
        prefix=code,
        range_from=base + lo,
        range_to=base + hi,
        operator=operator,
        region=subject.name if subject else region_raw,
        region_raw=region_raw,
        zones=subject.zones if subject else None,
        line=line,
    )
