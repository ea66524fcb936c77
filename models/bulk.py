"""The bulk loader: the one engine every number load uses (API bulk endpoint, SFTP imports).

``load_numbers(conn, project_id, chunks)`` streams bounded chunks of raw rows into a temporary
staging table with ``COPY``, normalising each chunk to E.164 in Python first (the vectorised
``normalize_many``) so invalid rows are reported with line, raw value and reason and never reach
the database. One ``INSERT ... SELECT DISTINCT ON ... ON CONFLICT DO NOTHING`` then drops
duplicates within the input (first occurrence wins) and against the project, and inserts the
rest. One call is one transaction (a savepoint when the caller already has one): all or nothing.

Its stages, one module each (why each is shaped so: figures in docs/benchmarks.md,
`benchmarks/bench_loader.py`):

* models/bulk_stage.py   - normalise and COPY into the TEMP stage, rejects reported per line;
* models/bulk_dialing.py - time zone, region, operator of each staged number;
* models/bulk_insert.py  - the one INSERT (dedupe, phone order, FK checks, the DNC count);
* models/load_dedupe.py  - a wider dedupe rule's part of that INSERT, and its report;
* models/number_loads.py - the load's record and its dedupe rule.

The vocabulary (errors, RowChunk, Reject, LoadResult) is models/bulk_types.py, re-exported here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from itertools import islice
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from models import bulk_insert, bulk_stage, load_dedupe, number_loads
from models.bulk_dialing import Zones
from models.bulk_types import (
    ELSEWHERE_REASON,
    BulkLoadError,
    BulkLoadTimeout,
    LoadResult,
    Reject,
    RejectSink,
    RowChunk,
)
from models.db import timeout_reason
from models.number_loads import LoadSource
from models.phones import normalize_many

__all__ = [
    "DEFAULT_CHUNK_ROWS",
    "ELSEWHERE_REASON",
    "BulkLoadError",
    "BulkLoadTimeout",
    "LoadResult",
    "Reject",
    "RowChunk",
    "chunked",
    "load_numbers",
]

# Default size for `chunked`.
DEFAULT_CHUNK_ROWS = 50_000


def chunked(
    phones: Iterable[object],
    attributes: Iterable[dict[str, Any] | None] | None = None,
    *,
    size: int = DEFAULT_CHUNK_ROWS,
    first_line: int = 1,
) -> Iterator[RowChunk]:
    """Cut a lazy stream of phones (and, aligned, attributes) into RowChunks of `size` rows."""
    if size < 1:
        raise ValueError("size must be >= 1")
    it = iter(phones)
    attrs_it = iter(attributes) if attributes is not None else None
    line = first_line
    while True:
        block = list(islice(it, size))
        if not block:
            return
        attrs = list(islice(attrs_it, len(block))) if attrs_it is not None else None
        if attrs is not None and len(attrs) != len(block):
            raise BulkLoadError("attributes stream is shorter than the phones stream")
        yield RowChunk(block, range(line, line + len(block)), attrs)
        line += len(block)


def load_numbers(
    conn: psycopg.Connection[Any],
    project_id: int,
    chunks: Iterable[RowChunk],
    *,
    provider_id: int | None = None,
    geo_id: int | None = None,
    region: str = "RU",
    reject_limit: int = 1000,
    on_reject: Callable[[Reject], None] | None = None,
    record: LoadSource | None = None,
    dialing: bool = True,
) -> LoadResult:
    """Load numbers into one project; see the module docstring. Raises BulkLoadError for bad
    arguments, BulkLoadTimeout (a BulkLoadError) when the connection's lock or statement timeout
    cut the load; any error (bad input shape, iterator failure, database error) rolls back.

    `record`: write a number_loads row (same transaction) and stamp every inserted number's
    source_load_id with it. The project's dedupe rule applies either way.

    `dialing=False` is for benchmarks/bench_dialing.py only (the load as it was before issue 14,
    to measure what the dialing stages cost): no time-zone lookup, the dialing columns left
    NULL, no registry join, no do-not-call count (nor a wider dedupe rule or a load record).
    Every real insert path keeps the default."""
    _check_int("project_id", project_id)
    _check_int("provider_id", provider_id, optional=True)
    _check_int("geo_id", geo_id, optional=True)
    if reject_limit < 0:
        raise BulkLoadError("reject_limit must be >= 0")
    try:
        normalize_many([], region)
    except ValueError as exc:
        raise BulkLoadError(f"region: {exc}") from None

    started = time.perf_counter()
    result = LoadResult()
    rejects = RejectSink(result, reject_limit, on_reject)
    with _timeouts_as_load_errors(), conn.transaction():
        _validate_refs(conn, project_id, provider_id, geo_id)
        rule = number_loads.dedupe_rule(conn, project_id)
        if record is not None:
            result.load_id = number_loads.create(conn, project_id, provider_id, record, rule)
        zones = Zones.read(conn, geo_id) if dialing else None
        stage = bulk_stage.create(conn)
        valid = bulk_stage.copy_chunks(conn, stage, chunks, region, result, rejects, zones)
        if zones is not None:
            zones.write_sets(conn)
        elsewhere = None if rule.project_only else load_dedupe.create_stage(conn)
        if not valid:
            distinct = inserted = 0
        elif not dialing:
            distinct, inserted, _ = bulk_insert.insert_without_dialing(
                conn, stage, project_id, provider_id, geo_id
            )
        else:
            distinct, inserted, result.on_dnc = bulk_insert.insert(
                conn, stage, project_id, provider_id, geo_id, result.load_id, rule, elsewhere
            )
        conn.execute(sql.SQL("DROP TABLE {}").format(stage))
        if elsewhere is not None:
            result.duplicate_elsewhere = load_dedupe.report(conn, elsewhere, rejects)
        result.invalid = result.read - valid
        result.duplicate_in_input = valid - distinct
        result.already_present = distinct - inserted - result.duplicate_elsewhere
        result.inserted = inserted
        if result.load_id is not None:
            number_loads.finish(conn, result.load_id, result.as_dict())
    result.seconds = time.perf_counter() - started
    return result


@contextmanager
def _timeouts_as_load_errors() -> Iterator[None]:
    """A lock or statement timeout that cut the load -> BulkLoadTimeout naming what waited."""
    try:
        yield
    except (pg_errors.LockNotAvailable, pg_errors.QueryCanceled) as exc:
        # A row or index wait names its table in the error; a table-lock wait does not, and the
        # load's writes all go to phone_numbers (the project row's wait is named by PostgreSQL).
        reason = timeout_reason(exc, "phone_numbers", outcome="nothing was imported")
        if reason is None:  # cancelled by an operator (pg_cancel_backend): not ours to word
            raise
        raise BulkLoadTimeout(reason) from exc


def _validate_refs(
    conn: psycopg.Connection[Any], project_id: int, provider_id: int | None, geo_id: int | None
) -> None:
    # FOR SHARE: a concurrent soft delete of the project waits for this load to finish,
    # so we never commit numbers into a project deleted meanwhile.
    row = conn.execute(
        "SELECT is_deleted FROM projects WHERE id = %s FOR SHARE", (project_id,)
    ).fetchone()
    if row is None:
        raise BulkLoadError(f"project {project_id} does not exist")
    if row[0]:
        raise BulkLoadError(f"project {project_id} is deleted")
    if (
        provider_id is not None
        and conn.execute(
            "SELECT 1 FROM providers WHERE id = %s FOR KEY SHARE", (provider_id,)
        ).fetchone()
        is None
    ):
        raise BulkLoadError(f"provider {provider_id} does not exist")
    if (
        geo_id is not None
        and conn.execute("SELECT 1 FROM geo WHERE id = %s FOR KEY SHARE", (geo_id,)).fetchone()
        is None
    ):
        raise BulkLoadError(f"geo {geo_id} does not exist")


def _check_int(name: str, value: object, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise BulkLoadError(f"{name} must be a positive integer, got {value!r}")
