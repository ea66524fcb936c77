"""The bulk loader's stage: input chunks normalised in Python and COPYed into a TEMP table.

* COPY text blocks are built by hand (one f-string per row, one ``copy.write`` per sub-chunk):
  faster than ``write_row`` and the normalised phone needs no escaping.
* The staging table is TEMP (no WAL, private, gone on commit/rollback) with no index: a 1M-row
  stage costs well under a second.
* Memory: one sub-chunk of at most ``SUB_CHUNK`` rows is alive at a time, whatever the input.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
from psycopg import sql

from models.bulk_dialing import Zones, stage_fields
from models.bulk_types import BulkLoadError, LoadResult, Reject, RejectSink, RowChunk
from models.dialing.queue_rules import priority_problem
from models.dialing.resolve import STAGE_COLUMN_DDL
from models.phones import normalize_many

# Rows per COPY block: ~1-4 MB of text, small enough to keep memory flat.
SUB_CHUNK = 50_000


def create(conn: psycopg.Connection[Any]) -> sql.Identifier:
    """The load's private staging table: (line, phone, attributes, the dialing fields)."""
    stage = sql.Identifier(f"numbase_stage_{uuid.uuid4().hex[:12]}")
    conn.execute(
        sql.SQL(
            "CREATE TEMP TABLE {} (line bigint NOT NULL, phone text NOT NULL, "
            "attributes jsonb, " + STAGE_COLUMN_DDL + ") ON COMMIT DROP"
        ).format(stage)
    )
    return stage


def copy_chunks(
    conn: psycopg.Connection[Any],
    stage: sql.Identifier,
    chunks: Iterable[RowChunk],
    region: str,
    result: LoadResult,
    rejects: RejectSink,
    zones: Zones | None,
) -> int:
    """Stream every chunk into `stage` (counting result.read); -> how many rows were valid."""
    valid = 0
    next_line = 1
    with (
        conn.cursor() as cur,
        cur.copy(sql.SQL("COPY {} FROM STDIN").format(stage)) as copy,
    ):
        for chunk in chunks:
            if not isinstance(chunk, RowChunk):
                raise BulkLoadError(f"chunks must be RowChunk, got {type(chunk).__name__}")
            n = len(chunk.phones)
            lines = chunk.lines if chunk.lines is not None else range(next_line, next_line + n)
            if len(lines) != n:
                raise BulkLoadError(f"chunk has {n} phones but {len(lines)} line numbers")
            if chunk.attributes is not None and len(chunk.attributes) != n:
                raise BulkLoadError(f"chunk has {n} phones but {len(chunk.attributes)} attributes")
            for lo in range(0, n, SUB_CHUNK):
                hi = min(lo + SUB_CHUNK, n)
                valid += _copy_sub_chunk(copy, chunk, lines, lo, hi, region, rejects, zones)
            result.read += n
            if n:
                next_line = int(list(lines[n - 1 : n])[0]) + 1
    return valid


def _copy_sub_chunk(
    copy: psycopg.Copy,
    chunk: RowChunk,
    lines: Sequence[int],
    lo: int,
    hi: int,
    region: str,
    rejects: RejectSink,
    zones: Zones | None,
) -> int:
    """Normalise rows [lo, hi) of a chunk, report rejects, COPY the valid ones; -> valid count."""
    # Plain lists: positional indexing even for pandas Series / numpy input.
    raw = list(chunk.phones[lo:hi])
    phones, reasons = normalize_many(raw, region)
    line_slice = list(lines[lo:hi])
    attrs = chunk.attributes[lo:hi] if chunk.attributes is not None else None
    if attrs is not None:  # a `priority` column feeds the dial queue: a bad one rejects the line
        for i, a in enumerate(attrs):
            problem = (
                priority_problem(a["priority"])
                if phones[i] and isinstance(a, dict) and "priority" in a
                else None
            )
            if problem:
                phones[i], reasons[i] = None, problem
    bad = [i for i, r in enumerate(reasons) if r is not None] if None in phones else []
    for i in bad:
        rejects(Reject(int(line_slice[i]), _raw_text(raw[i]), reasons[i] or "invalid"))
    tz = stage_fields(zones, phones)
    if attrs is None:
        body = "".join(
            [f"{ln}\t{p}\t\\N\t{z}\n" for ln, p, z in zip(line_slice, phones, tz, strict=True) if p]
        )
    else:
        body = "".join(
            [
                f"{ln}\t{p}\t{_attributes_field(a, ln)}\t{z}\n"
                for ln, p, a, z in zip(line_slice, phones, attrs, tz, strict=True)
                if p
            ]
        )
    if body:
        copy.write(body)
    return (hi - lo) - len(bad)


# --- COPY text encoding ------------------------------------------------------------------


def _sanitize(value: Any) -> Any:
    """JSON-safe copy: NaN/inf -> null (empty spreadsheet cells), NUL removed from strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {str(k).replace("\x00", ""): _sanitize(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_sanitize(v) for v in value]
    return value


def _attributes_field(attrs: dict[str, Any] | None, line: int) -> str:
    """One attributes value as a COPY text field (\\N for none/empty)."""
    if attrs is None:
        return "\\N"
    if not isinstance(attrs, dict):
        raise BulkLoadError(f"line {line}: attributes must be a dict, not {type(attrs).__name__}")
    if not attrs:
        return "\\N"
    try:
        text = json.dumps(attrs, ensure_ascii=False, allow_nan=False, default=str)
    except ValueError:  # NaN/inf somewhere
        text = json.dumps(_sanitize(attrs), ensure_ascii=False, default=str)
    if "\\u0000" in text:  # jsonb refuses NUL; strip it rather than fail the whole load
        text = json.dumps(_sanitize(attrs), ensure_ascii=False, default=str)
    # json.dumps never emits raw tab/newline; backslash is COPY's escape character.
    return text.replace("\\", "\\\\")


def _raw_text(value: object) -> str:
    return "" if value is None else str(value)
