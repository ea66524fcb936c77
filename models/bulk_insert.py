"""The bulk loader's one INSERT: from the stage into phone_numbers, deduplicated.

``DISTINCT ON (phone) ... ORDER BY phone, line`` dedupes the stage (first occurrence wins) and
hands the rows to the INSERT in phone order, so the one index on a random key (the unique
(phone_number, project_id)) is walked left to right instead of being hit at random;
``ON CONFLICT DO NOTHING`` skips the numbers the project has. A wider dedupe rule adds its CTE
(models/load_dedupe.py); the do-not-call count rides in the same statement
(models/dialing/dnc.py `LOADED_ON_DNC`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql

from models import load_dedupe
from models.dialing.dnc import LOADED_ON_DNC
from models.number_loads import DedupeRule

# The dedupe sort of a large load; set for the INSERT only (see insert_settings).
_SORT_WORK_MEM = "256MB"


def may_skip_fk_checks(conn: psycopg.Connection[Any]) -> bool:
    """Whether the INSERT may run without per-row foreign-key triggers.

    The checks are a third of the INSERT's cost, and they re-verify what the loader's
    `_validate_refs` already holds locked until commit (project FOR SHARE, provider and geo FOR
    KEY SHARE), for every row. Skipping them (`session_replication_role = replica`,
    transaction-local) needs the privilege to set that parameter (superuser, or PostgreSQL 15+'s
    GRANT SET ON PARAMETER), and is refused whenever phone_numbers has a user trigger that fires
    on INSERT and that replica mode would skip (enabled 'O', the default), so no such trigger is
    ever silently bypassed. Triggers enabled ALWAYS ('A': the callable counts, migration 0009)
    fire in replica mode too.
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
def insert_settings(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """The big sort's work_mem and, when safe, no FK triggers, for the INSERT only; both put
    back after it: inside a caller's transaction SET LOCAL would outlive our savepoint."""
    prev = conn.execute(
        "SELECT current_setting('work_mem'), current_setting('session_replication_role')"
    ).fetchone()
    assert prev is not None
    conn.execute("SELECT set_config('work_mem', %s, true)", (_SORT_WORK_MEM,))
    if may_skip_fk_checks(conn):
        conn.execute("SELECT set_config('session_replication_role', 'replica', true)")
    yield
    conn.execute("SELECT set_config('work_mem', %s, true)", (prev[0],))
    conn.execute("SELECT set_config('session_replication_role', %s, true)", (prev[1],))


_INSERT = """
    WITH firsts AS MATERIALIZED (
        SELECT DISTINCT ON (phone) phone, line, attributes, range_id, tz, tz_source, tz_set_id
        FROM {stage} ORDER BY phone, line
    ), {skip_cte} ins AS (
        INSERT INTO phone_numbers (phone_number, project_id, provider_id, geo_id, attributes,
                                   timezone, timezone_source, timezone_set_id, region, operator,
                                   source_load_id, priority)
        SELECT f.phone, %(project)s, %(provider)s, %(geo)s, f.attributes, f.tz, f.tz_source,
               f.tz_set_id, r.region, r.operator, %(load)s,
               -- checked per line (priority_problem); kept in attributes as sent too
               coalesce(CAST(trim(f.attributes->>'priority') AS integer), 0)
        FROM firsts f LEFT JOIN numbering_ranges r ON r.id = f.range_id {skip_where}
        -- keep phone order for the unique index (a presorted sort is cheap)
        ORDER BY f.phone
        ON CONFLICT (phone_number, project_id) DO NOTHING
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM firsts), (SELECT count(*) FROM ins), ({on_dnc})
"""


def insert_statement(
    conn: psycopg.Connection[Any],
    stage: sql.Identifier,
    project_id: int,
    provider_id: int | None,
    geo_id: int | None,
    load_id: int | None,
    rule: DedupeRule,
    elsewhere: sql.Identifier | None,
) -> tuple[sql.Composed, dict[str, Any]]:
    """`insert`'s statement and parameters (apart for EXPLAIN: benchmarks/bench_loader.py)."""
    params: dict[str, Any] = {
        "project": project_id, "provider": provider_id, "geo": geo_id, "load": load_id,
    }  # fmt: skip
    skip_cte, skip_where = sql.SQL(""), sql.SQL("")
    if elsewhere is not None:
        skip_cte, skip_where, skip_params = load_dedupe.insert_parts(conn, rule, elsewhere)
        params.update(skip_params)
    statement = sql.SQL(_INSERT).format(
        stage=stage, skip_cte=skip_cte, skip_where=skip_where, on_dnc=LOADED_ON_DNC
    )
    return statement, params


def insert(
    conn: psycopg.Connection[Any],
    stage: sql.Identifier,
    project_id: int,
    provider_id: int | None,
    geo_id: int | None,
    load_id: int | None,
    rule: DedupeRule,
    elsewhere: sql.Identifier | None,
) -> tuple[int, int, int]:
    """The one INSERT: dedupe the stage, skip numbers the project has, and, under a wider dedupe
    rule, those found elsewhere (into the `elsewhere` table).

    Returns (distinct valid numbers, inserted rows, of the distinct ones on a DNC list).
    """
    statement, params = insert_statement(
        conn, stage, project_id, provider_id, geo_id, load_id, rule, elsewhere
    )
    with insert_settings(conn):
        row = conn.execute(statement, params).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def insert_without_dialing(
    conn: psycopg.Connection[Any],
    stage: sql.Identifier,
    project_id: int,
    provider_id: int | None,
    geo_id: int | None,
) -> tuple[int, int, int]:
    """`insert` as it was before issue 14 (benchmark baseline): no registry join, no DNC."""
    with insert_settings(conn):
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
