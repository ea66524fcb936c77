"""The bulk loader: the one engine every number load uses (API bulk endpoint, SFTP imports).

``load_numbers(conn, project_id, chunks)`` streams bounded chunks of raw rows into a temporary
staging table with ``COPY``, normalising each chunk to E.164 in Python first (the vectorised
``normalize_many``) so invalid rows are reported with line, raw value and reason and never reach
the database. One ``INSERT ... SELECT DISTINCT ON ... ON CONFLICT DO NOTHING`` then drops
duplicates within the input (first occurrence wins) and against the project, and inserts the
rest. One call is one transaction (a savepoint when the caller already has one): all or nothing.

Why this shape (figures in docs/benchmarks.md, `benchmarks/bench_loader.py`):

* COPY text blocks are built by hand (one f-string per row, one ``copy.write`` per sub-chunk):
  faster than ``write_row`` and the normalised phone needs no escaping.
* The staging table is TEMP (no WAL, private, gone on commit/rollback) with no index: a 1M-row
  stage costs well under a second; everything else is the final INSERT.
* ``DISTINCT ON (phone) ... ORDER BY phone, line`` dedupes and hands the rows to the INSERT in
  phone order, so the one index on a random key (the unique (phone_number, project_id)) is
  walked left to right instead of being hit at random.
* Memory: one sub-chunk of at most ``_SUB_CHUNK`` rows is alive at a time, whatever the input.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from itertools import islice
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from models import load_dedupe, number_loads
from models.db import timeout_reason
from models.dialing.queue_rules import priority_problem
from models.dialing.resolve import STAGE_COLUMN_DDL, RangeIndex, geo_zone, stage_fragments
from models.dialing.resolve import current_index as current_registry
from models.dialing.zonesets import ensure_sets
from models.number_loads import DedupeRule, LoadSource
from models.phones import normalize_many

# Rows per COPY block: ~1-4 MB of text, small enough to keep memory flat.
_SUB_CHUNK = 50_000
# Default size for `chunked`.
DEFAULT_CHUNK_ROWS = 50_000
# The stage's four dialing fields when the load runs without them (benchmarks only).
_NO_DIALING = "\\N\t\\N\t\\N\t\\N"
# The dedupe sort of a large load; SET LOCAL only, reverted by the transaction's end.
_SORT_WORK_MEM = "256MB"
# What any reader of a cross-project duplicate sees; only the file's reject report (read by data
# engineers and admins) names the other project (Reject.report_reason).
ELSEWHERE_REASON = "already in another project"


class BulkLoadError(ValueError):
    """The load cannot run (unknown/deleted project, unknown provider/geo, malformed chunk)."""


class BulkLoadTimeout(BulkLoadError):
    """The load waited longer than the lock timeout, or ran past the statement timeout, and was
    rolled back whole. Nothing is wrong with the input: a later attempt may succeed."""

    transient = True


@dataclass
class RowChunk:
    """One bounded chunk of input rows."""

    phones: Sequence[object]  # raw values as read (str/int/float/None)
    lines: Sequence[int] | None = None  # source line numbers (default: running count from 1)
    attributes: Sequence[dict[str, Any] | None] | None = None  # extra columns -> JSONB


@dataclass
class Reject:
    line: int
    raw: str
    reason: str
    # A duplicate_elsewhere row: the code of the project that has the number. Never sent to a
    # manager; as_dict() and the API leave it out.
    other_project: str | None = field(default=None, repr=False)

    @property
    def report_reason(self) -> str:
        """The reason as the file's reject report words it (names the other project)."""
        if self.other_project is None:
            return self.reason
        return f"already in project {self.other_project}"

    def public(self) -> dict[str, Any]:
        return {"line": self.line, "raw": self.raw, "reason": self.reason}


@dataclass
class LoadResult:
    read: int = 0
    inserted: int = 0
    duplicate_in_input: int = 0
    already_present: int = 0
    invalid: int = 0
    on_dnc: int = 0  # distinct valid numbers of the input on an active do-not-call entry
    rejects: list[Reject] = field(default_factory=list)  # the first `reject_limit`
    seconds: float = 0.0
    # Skipped by the project's dedupe scope: present in another project (or called recently).
    duplicate_elsewhere: int = 0
    load_id: int | None = None  # the number_loads row, when the load was recorded

    @property
    def rows_per_second(self) -> float:
        return self.read / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["rejects"] = [r.public() for r in self.rejects]
        out["seconds"] = round(self.seconds, 3)
        out["rows_per_second"] = round(self.rows_per_second, 1)
        return out


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


# --- the loader ----------------------------------------------------------------------------


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
    try:
        return _load_numbers(
            conn, project_id, chunks, provider_id=provider_id, geo_id=geo_id, region=region,
            reject_limit=reject_limit, on_reject=on_reject, record=record, dialing=dialing,
        )  # fmt: skip
    except (pg_errors.LockNotAvailable, pg_errors.QueryCanceled) as exc:
        # A row or index wait names its table in the error; a table-lock wait does not, and the
        # load's writes all go to phone_numbers (the project row's wait is named by PostgreSQL).
        reason = timeout_reason(exc, "phone_numbers", outcome="nothing was imported")
        if reason is None:  # cancelled by an operator (pg_cancel_backend): not ours to word
            raise
        raise BulkLoadTimeout(reason) from exc


def _load_numbers(
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
    stage = sql.Identifier(f"numbase_stage_{uuid.uuid4().hex[:12]}")
    valid = 0
    with conn.transaction():
        _validate_refs(conn, project_id, provider_id, geo_id)
        rule = number_loads.dedupe_rule(conn, project_id)
        if record is not None:
            result.load_id = number_loads.create(conn, project_id, provider_id, record, rule)
        # Time zone, region, operator (models/dialing/resolve.py) ride along in the stage.
        zones = _Zones(current_registry(conn), geo_zone(conn, geo_id)) if dialing else None
        conn.execute(
            sql.SQL(
                "CREATE TEMP TABLE {} (line bigint NOT NULL, phone text NOT NULL, "
                "attributes jsonb, " + STAGE_COLUMN_DDL + ") ON COMMIT DROP"
            ).format(stage)
        )
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
                    raise BulkLoadError(
                        f"chunk has {n} phones but {len(chunk.attributes)} attributes"
                    )
                for lo in range(0, n, _SUB_CHUNK):
                    hi = min(lo + _SUB_CHUNK, n)
                    valid += _copy_sub_chunk(
                        copy, chunk, lines, lo, hi, region, result, reject_limit, on_reject, zones
                    )
                result.read += n
                if n:
                    next_line = int(list(lines[n - 1 : n])[0]) + 1
        if zones is not None:
            ensure_sets(conn, zones.sets_seen)
        elsewhere = None if rule.project_only else load_dedupe.create_stage(conn)
        if valid:
            distinct, inserted, result.on_dnc = _insert(
                conn,
                stage,
                project_id,
                provider_id,
                geo_id,
                result.load_id,
                rule,
                elsewhere,
                dialing=dialing,
            )
        else:
            distinct = inserted = 0
        conn.execute(sql.SQL("DROP TABLE {}").format(stage))
        if elsewhere is not None:
            result.duplicate_elsewhere = _report_elsewhere(
                conn, elsewhere, result, reject_limit, on_reject
            )
        result.invalid = result.read - valid
        result.duplicate_in_input = valid - distinct
        result.already_present = distinct - inserted - result.duplicate_elsewhere
        result.inserted = inserted
        if result.load_id is not None:
            number_loads.finish(conn, result.load_id, result.as_dict())
    result.seconds = time.perf_counter() - started
    return result


@dataclass
class _Zones:
    registry: RangeIndex
    geo_zone: str | None
    sets_seen: dict[int, tuple[str, ...]] = field(default_factory=dict)


def _copy_sub_chunk(
    copy: psycopg.Copy,
    chunk: RowChunk,
    lines: Sequence[int],
    lo: int,
    hi: int,
    region: str,
    result: LoadResult,
    reject_limit: int,
    on_reject: Callable[[Reject], None] | None,
    zones: _Zones | None,
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
        reject = Reject(int(line_slice[i]), _raw_text(raw[i]), reasons[i] or "invalid")
        if on_reject is not None:
            on_reject(reject)
        if len(result.rejects) < reject_limit:
            result.rejects.append(reject)
    if zones is None:  # dialing=False (benchmark baseline): the stage's dialing fields NULL
        tz: Sequence[str] = [_NO_DIALING] * len(phones)
    else:
        tz = stage_fragments(phones, zones.registry, zones.geo_zone, zones.sets_seen)
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


def _may_skip_fk_checks(conn: psycopg.Connection[Any]) -> bool:
    """Whether the INSERT may run without per-row foreign-key triggers.

    The checks are a third of the INSERT's cost, and they re-verify what `_validate_refs`
    already holds locked until commit (project FOR SHARE, provider and geo FOR KEY SHARE), for
    every row. Skipping them (`session_replication_role = replica`, transaction-local) needs the
    privilege to set that parameter (superuser, or PostgreSQL 15+'s GRANT SET ON PARAMETER), and
    is refused whenever phone_numbers has a user trigger that fires on INSERT and that replica
    mode would skip (enabled 'O', the default), so no such trigger is ever silently bypassed.
    Triggers enabled ALWAYS ('A': the callable counts, migration 0009) fire in replica mode too.
    """
    row = conn.execute(
        """
        SELECT (current_setting('is_superuser') = 'on'
                OR has_parameter_privilege('session_replication_role', 'SET'))
           AND NOT EXISTS (
                SELECT 1 FROM pg_trigger
                WHERE tgrelid = 'phone_numbers'::regclass AND NOT tgisinternal
                  AND tgtype & 4 <> 0  -- TRIGGER_TYPE_INSERT
                  AND tgenabled = 'O')
        """
    ).fetchone()
    return bool(row and row[0])


@contextmanager
def _insert_settings(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """The big sort's work_mem and, when safe, no FK triggers, for the INSERT only; both put
    back after it: inside a caller's transaction SET LOCAL would outlive our savepoint."""
    prev = conn.execute(
        "SELECT current_setting('work_mem'), current_setting('session_replication_role')"
    ).fetchone()
    assert prev is not None
    conn.execute("SELECT set_config('work_mem', %s, true)", (_SORT_WORK_MEM,))
    if _may_skip_fk_checks(conn):
        conn.execute("SELECT set_config('session_replication_role', 'replica', true)")
    yield
    conn.execute("SELECT set_config('work_mem', %s, true)", (prev[0],))
    conn.execute("SELECT set_config('session_replication_role', %s, true)", (prev[1],))


def _insert(
    conn: psycopg.Connection[Any],
    stage: sql.Identifier,
    project_id: int,
    provider_id: int | None,
    geo_id: int | None,
    load_id: int | None = None,
    rule: DedupeRule | None = None,
    elsewhere: sql.Identifier | None = None,
    *,
    dialing: bool = True,
) -> tuple[int, int, int]:
    """The one INSERT: dedupe the stage (first line wins), skip numbers the project has, and,
    under a wider dedupe rule, those it finds elsewhere (models/load_dedupe.py, into
    `elsewhere`).

    Returns (distinct valid numbers, inserted rows, of the distinct ones on a DNC list).
    """
    if not dialing:
        return _insert_without_dialing(conn, stage, project_id, provider_id, geo_id)
    rule = rule or DedupeRule()
    skip_cte, skip_where = sql.SQL(""), sql.SQL("")
    params: dict[str, Any] = {
        "project": project_id, "provider": provider_id, "geo": geo_id, "load": load_id,
    }  # fmt: skip
    if elsewhere is not None:
        skip_cte = load_dedupe.ELSEWHERE.format(elsewhere=elsewhere)
        skip_where = sql.SQL("WHERE NOT EXISTS (SELECT 1 FROM skipped s WHERE s.phone = f.phone)")
        params["all_projects"] = rule.scope == "all_projects"
        params["since"] = number_loads.window_start(conn, rule)
    with _insert_settings(conn):
        row = conn.execute(
            sql.SQL(
                """
            WITH firsts AS MATERIALIZED (
                SELECT DISTINCT ON (phone) phone, line, attributes, range_id, tz, tz_source,
                       tz_set_id
                FROM {stage} ORDER BY phone, line
            ), {skip_cte} ins AS (
                INSERT INTO phone_numbers (phone_number, project_id, provider_id, geo_id,
                                           attributes, timezone, timezone_source,
                                           timezone_set_id, region, operator, source_load_id,
                                           priority)
                SELECT f.phone, %(project)s, %(provider)s, %(geo)s, f.attributes, f.tz,
                       f.tz_source, f.tz_set_id, r.region, r.operator, %(load)s,
                       -- checked per line (priority_problem); kept in attributes as sent too
                       coalesce(CAST(trim(f.attributes->>'priority') AS integer), 0)
                FROM firsts f LEFT JOIN numbering_ranges r ON r.id = f.range_id {skip_where}
                -- keep phone order for the unique index (a presorted sort is cheap)
                ORDER BY f.phone
                ON CONFLICT (phone_number, project_id) DO NOTHING
                RETURNING 1
            )
            SELECT (SELECT count(*) FROM firsts), (SELECT count(*) FROM ins),
                   (SELECT count(*) FROM firsts f WHERE EXISTS (
                        SELECT 1 FROM dnc_entries d
                        WHERE d.phone_number = f.phone
                          AND (d.project_id IS NULL OR d.project_id = %(project)s)
                          AND (d.expires_at IS NULL OR d.expires_at > now())))
            """
            ).format(stage=stage, skip_cte=skip_cte, skip_where=skip_where),
            params,
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def _report_elsewhere(
    conn: psycopg.Connection[Any],
    elsewhere: sql.Identifier,
    result: LoadResult,
    reject_limit: int,
    on_reject: Callable[[Reject], None] | None,
) -> int:
    """Hand every blocked row to `on_reject` in line order, keep the first ones in
    result.rejects; -> how many."""
    count = 0
    for line, phone, other in load_dedupe.blocked_rows(conn, elsewhere, _SUB_CHUNK):
        count += 1
        reject = Reject(line, phone, ELSEWHERE_REASON, other_project=other)
        if on_reject is not None:
            on_reject(reject)
        if len(result.rejects) < reject_limit:
            result.rejects.append(reject)
    return count


def _insert_without_dialing(
    conn: psycopg.Connection[Any],
    stage: sql.Identifier,
    project_id: int,
    provider_id: int | None,
    geo_id: int | None,
) -> tuple[int, int, int]:
    """`_insert` as it was before issue 14 (benchmark baseline): no registry join, no DNC."""
    with _insert_settings(conn):
        row = conn.execute(
            sql.SQL(
                """
            WITH firsts AS MATERIALIZED (
                SELECT DISTINCT ON (phone) phone, attributes FROM {stage} ORDER BY phone, line
            ), ins AS (
                INSERT INTO phone_numbers (phone_number, project_id, provider_id, geo_id,
                                           attributes)
                SELECT f.phone, %(project)s, %(provider)s, %(geo)s, f.attributes
                FROM firsts f ORDER BY f.phone
                ON CONFLICT (phone_number, project_id) DO NOTHING
                RETURNING 1
            )
            SELECT (SELECT count(*) FROM firsts), (SELECT count(*) FROM ins)
            """
            ).format(stage=stage),
            {"project": project_id, "provider": provider_id, "geo": geo_id},
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), 0
