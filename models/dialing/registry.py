"""The Russian numbering-plan registry: replace the `numbering_ranges` table from extracts.

The files are parsed by models/dialing/registry_format.py (both encodings, extra columns, a bad
line refuses the file with its line); a range overlapping another, in any file of the load, is
refused too: a registry is either replaced whole or not at all.

`load_registry` parses every file into a TEMP staging table with COPY, checks overlaps in SQL,
then swaps the contents of `numbering_ranges` in one transaction (TRUNCATE + INSERT ... SELECT,
under a lock taken without queueing: readers keep reading the old registry until the commit).
Each load is a `registry_loads` row with its counts per file.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from models.dialing.registry_format import Range, RegistryFormatError, parse_registry

__all__ = ["Range", "RegistryFormatError", "RegistryLoadResult", "load_registry", "parse_registry"]

COUNTRY = "7"
# How long a swap waits for running bulk loads (which read the registry) to finish.
SWAP_WAIT_SECONDS = 600.0


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
