"""Dedupe beyond the project (projects.dedupe_scope / dedupe_window_days): the part of the bulk
loader's one statement that finds staged numbers another project blocks, and reading them back.

Set-based, in the INSERT's own statement (models/bulk_insert.py `insert`): one probe of
uq_phone_numbers_phone_project (phone first) per distinct staged number reads every row of that
phone; a number the project already has stays `already_present` (ON CONFLICT) and never counts
as elsewhere. Blocking: any live project (all_projects), or a call in any project, live or
deleted, at or after %(since)s (phone_numbers.last_call_at, the latest call; loads are not
calls). The blocked rows go to a
second temp table, so the report can name the other project without a second pass.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import sql

from models import number_loads
from models.bulk_types import ELSEWHERE_REASON, Reject, RejectSink
from models.number_loads import DedupeRule

# Rows per fetch of the blocked rows' cursor.
_REPORT_BATCH = 50_000

# A CTE of the loader's statement: needs `firsts` (phone, line) and the parameters
# %(project)s, %(all_projects)s, %(since)s; the INSERT skips the phones of `skipped`.
# A plain join, grouped, rather than a LATERAL (... ORDER BY ... LIMIT 1) per staged number:
# the same answer (a number the project has is never blocked; else the first blocking
# project's code), without a sort node rescanned for each of a million numbers, most of which
# match no row at all (docs/benchmarks.md, issue 16).
ELSEWHERE = sql.SQL(
    """
    skipped AS (
        INSERT INTO {elsewhere} (line, phone, other)
        SELECT f.line, f.phone, min(p.code)
        FROM firsts f
        JOIN phone_numbers pn ON pn.phone_number = f.phone
        JOIN projects p ON p.id = pn.project_id
        WHERE pn.project_id = %(project)s
           OR (%(all_projects)s AND NOT p.is_deleted)
           OR pn.last_call_at >= %(since)s
        GROUP BY f.phone, f.line
        HAVING NOT bool_or(pn.project_id = %(project)s)
        RETURNING phone
    ),"""
)


# The INSERT's filter once `skipped` is filled.
_SKIP_WHERE = sql.SQL("WHERE NOT EXISTS (SELECT 1 FROM skipped s WHERE s.phone = f.phone)")


def insert_parts(
    conn: psycopg.Connection[Any], rule: DedupeRule, elsewhere: sql.Identifier
) -> tuple[sql.Composable, sql.Composable, dict[str, Any]]:
    """(the `skipped` CTE, the INSERT's WHERE, their parameters) for `rule` into `elsewhere`."""
    params = {
        "all_projects": rule.scope == "all_projects",
        "since": number_loads.window_start(conn, rule),
    }
    return ELSEWHERE.format(elsewhere=elsewhere), _SKIP_WHERE, params


def create_stage(conn: psycopg.Connection[Any]) -> sql.Identifier:
    """The temp table the blocked rows go to (private, gone at commit/rollback)."""
    name = sql.Identifier(f"numbase_elsewhere_{uuid.uuid4().hex[:12]}")
    conn.execute(
        sql.SQL(
            "CREATE TEMP TABLE {} (line bigint NOT NULL, phone text NOT NULL, other text NOT NULL)"
            " ON COMMIT DROP"
        ).format(name)
    )
    return name


def blocked_rows(
    conn: psycopg.Connection[Any], stage: sql.Identifier, batch: int
) -> Iterator[tuple[int, str, str]]:
    """(line, phone, other project's code) in line order through a server-side cursor (memory
    stays flat however many), then drop the table."""
    with conn.cursor(name=f"numbase_elsewhere_{uuid.uuid4().hex[:8]}") as cur:
        cur.itersize = batch
        cur.execute(sql.SQL("SELECT line, phone, other FROM {} ORDER BY line").format(stage))
        for line, phone, other in cur:
            yield int(line), str(phone), str(other)
    conn.execute(sql.SQL("DROP TABLE {}").format(stage))


def report(conn: psycopg.Connection[Any], elsewhere: sql.Identifier, rejects: RejectSink) -> int:
    """Hand every blocked row to `rejects` in line order (the other project's code only on the
    report's side, Reject.other_project); -> how many."""
    count = 0
    for line, phone, other in blocked_rows(conn, elsewhere, _REPORT_BATCH):
        count += 1
        rejects(Reject(line, phone, ELSEWHERE_REASON, other_project=other))
    return count
