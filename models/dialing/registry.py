"""The Russian numbering-plan registry: parse extracts, replace the `numbering_ranges` table.

An extract (`ABC-3xx.csv`, `DEF-9xx.csv`, ...) is semicolon-separated with a header such as
`АВС/ DEF;От;До;Емкость;Оператор;Регион;ИНН`; older extracts are CP1251, newer UTF-8 (with or
without BOM); extra columns (a territory name, ...) are tolerated and ignored. A line that is not
a range (wrong field count, non-numeric code/bounds, From > To, capacity that disagrees with the
bounds, an overlap with another range) refuses the whole load with its file and line: a
registry is either replaced whole or not at all.

`load_registry` parses every file into a TEMP staging table with COPY, checks overlaps in SQL,
then swaps the contents of `numbering_ranges` in one transaction (TRUNCATE + INSERT ... SELECT:
readers and bulk loads wait for the swap rather than see half a registry). Each load is a
`registry_loads` row with its counts per file.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import psycopg

from models.dialing.regions import match_region

COUNTRY = "7"
# How long a swap waits for running bulk loads (which read the registry) to finish.
SWAP_WAIT_SECONDS = 600.0
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


@dataclass
class FileCounts:
    file: str
    encoding: str = ""
    ranges: int = 0
    numbers: int = 0
    unmapped_regions: dict[str, int] = field(default_factory=dict)


@dataclass
class RegistryLoadResult:
    load_id: int
    files: list[FileCounts]

    @property
    def ranges(self) -> int:
        return sum(f.ranges for f in self.files)

    def as_dict(self) -> dict[str, Any]:
        return {"load_id": self.load_id, "ranges": self.ranges,
                "files": [asdict(f) for f in self.files]}  # fmt: skip


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


# --- loading -------------------------------------------------------------------------------


def _copy_field(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\t", " ").replace("\n", " ").replace("\r", " ")


def _zones_field(zones: tuple[str, ...] | None) -> str:
    return "\\N" if zones is None else "{" + ",".join(zones) + "}"


def load_registry(
    conn: psycopg.Connection[Any],
    paths: Sequence[str | os.PathLike[str]],
    *,
    loaded_by: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> RegistryLoadResult:
    """Replace the registry with the ranges of `paths` (all files together are the new
    registry), atomically; raise RegistryFormatError and change nothing on any bad line.
    `progress(file, bytes_read, file_size)` is called while reading."""
    if not paths:
        raise RegistryFormatError("(no files)", None, "give at least one registry file")
    counts: list[FileCounts] = []
    with conn.transaction():
        conn.execute(
            "CREATE TEMP TABLE numbase_registry_stage (file_no int NOT NULL, line int NOT NULL, "
            "prefix int NOT NULL, range_from bigint NOT NULL, range_to bigint NOT NULL, "
            "operator text NOT NULL, region text NOT NULL, region_raw text NOT NULL, "
            "zones text[]) ON COMMIT DROP"
        )
        for file_no, path in enumerate(paths):
            counts.append(_stage_file(conn, file_no, Path(path), progress))
        _refuse_overlaps(conn, counts)
        load_id = _swap(conn, counts, loaded_by)
    return RegistryLoadResult(load_id, counts)


def _stage_file(
    conn: psycopg.Connection[Any],
    file_no: int,
    path: Path,
    progress: Callable[[str, int, int], None] | None,
) -> FileCounts:
    name = path.name
    size = path.stat().st_size
    result = FileCounts(file=name)
    report = (lambda done: progress(name, done, size)) if progress else None
    with (
        path.open("rb") as raw,
        conn.cursor() as cur,
        cur.copy(
            "COPY numbase_registry_stage (file_no, line, prefix, range_from, range_to, operator, "
            "region, region_raw, zones) FROM STDIN"
        ) as copy,
    ):
        result.encoding, ranges = parse_registry(raw, name, progress=report)
        buf: list[str] = []
        for r in ranges:
            result.ranges += 1
            result.numbers += r.range_to - r.range_from + 1
            if r.zones is None:
                result.unmapped_regions[r.region_raw] = (
                    result.unmapped_regions.get(r.region_raw, 0) + 1
                )
            buf.append(
                f"{file_no}\t{r.line}\t{r.prefix}\t{r.range_from}\t{r.range_to}\t"
                f"{_copy_field(r.operator)}\t{_copy_field(r.region)}\t"
                f"{_copy_field(r.region_raw)}\t{_zones_field(r.zones)}\n"
            )
            if len(buf) >= 10_000:
                copy.write("".join(buf))
                buf.clear()
        if buf:
            copy.write("".join(buf))
    result.encoding = "utf-8" if result.encoding == "utf-8-sig" else result.encoding
    return result


def _refuse_overlaps(conn: psycopg.Connection[Any], counts: list[FileCounts]) -> None:
    row = conn.execute(
        """
        SELECT file_no, line, prev_file, prev_line FROM (
            SELECT file_no, line, range_from,
                   lag(range_to) OVER w AS prev_to, lag(file_no) OVER w AS prev_file,
                   lag(line) OVER w AS prev_line
            FROM numbase_registry_stage WINDOW w AS (ORDER BY range_from, range_to)
        ) s WHERE range_from <= prev_to LIMIT 1
        """
    ).fetchone()
    if row is not None:
        file_no, line, prev_file, prev_line = row
        raise RegistryFormatError(
            counts[file_no].file,
            line,
            f"range overlaps {counts[prev_file].file}, line {prev_line}",
        )


def _lock_ranges(conn: psycopg.Connection[Any], wait_seconds: float = SWAP_WAIT_SECONDS) -> None:
    """Take the registry's exclusive lock without queueing for it.

    A plain TRUNCATE behind a long-running import would queue, and every later reader (other
    imports' lookups) would queue behind it. NOWAIT in a savepoint, retried, keeps the queue
    empty: readers carry on while the swap waits its turn. The lock outlives the savepoint."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            with conn.transaction():
                conn.execute("LOCK TABLE numbering_ranges IN ACCESS EXCLUSIVE MODE NOWAIT")
            return
        except psycopg.errors.LockNotAvailable:
            if time.monotonic() >= deadline:
                raise RegistryFormatError(
                    "(registry)", None,
                    f"the registry is in use by running loads for over {wait_seconds:.0f} s; "
                    "try again",
                ) from None  # fmt: skip
            time.sleep(0.2)


def _swap(conn: psycopg.Connection[Any], counts: list[FileCounts], loaded_by: str | None) -> int:
    total = sum(c.ranges for c in counts)
    row = conn.execute(
        "INSERT INTO registry_loads (files, ranges, loaded_by) VALUES (%s, %s, %s) RETURNING id",
        (json.dumps([asdict(c) for c in counts], ensure_ascii=False), total, loaded_by),
    ).fetchone()
    assert row is not None
    load_id = int(row[0])
    _lock_ranges(conn)
    # TRUNCATE holds ACCESS EXCLUSIVE until commit: no reader ever sees an empty registry.
    conn.execute("TRUNCATE numbering_ranges")
    conn.execute(
        """
        INSERT INTO numbering_ranges (load_id, country, prefix, range_from, range_to, operator,
                                      region, region_raw, zones)
        SELECT %s, %s, prefix, range_from, range_to, operator, region, region_raw, zones
        FROM numbase_registry_stage ORDER BY range_from
        """,
        (load_id, COUNTRY),
    )
    conn.execute("DROP TABLE numbase_registry_stage")
    return load_id
