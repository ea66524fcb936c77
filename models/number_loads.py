"""Loads and their dedupe rule: one `number_loads` row per load (an SFTP file's job or an API bulk
request), written by the bulk loader in the load's own transaction, so a load and its record
commit or roll back together; every number it inserts carries the row's id (source_load_id).

The dedupe rule is the project's (projects.dedupe_scope / dedupe_window_days), copied onto the
load row so a later change of the rule does not rewrite history (docs/lead-quality.md).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg

from models.tables import LOAD_KINDS


@dataclass(frozen=True)
class LoadSource:
    """Who and what a load is: recorded on its number_loads row."""

    kind: str  # "sftp" | "api"
    source: str | None = None  # the file path, or "json" / "csv:<name>"
    sftp_job_id: int | None = None
    created_by: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in LOAD_KINDS:
            raise ValueError(f"load kind must be one of {LOAD_KINDS}, got {self.kind!r}")


@dataclass(frozen=True)
class DedupeRule:
    scope: str = "project"  # one of models.tables.DEDUPE_SCOPES (a CHECK on projects)
    window_days: int | None = None

    @property
    def project_only(self) -> bool:
        """Today's rule: only the project's own numbers are skipped (the fast path)."""
        return self.scope == "project" and self.window_days is None


def dedupe_rule(conn: psycopg.Connection[Any], project_id: int) -> DedupeRule:
    row = conn.execute(
        "SELECT dedupe_scope, dedupe_window_days FROM projects WHERE id = %s", (project_id,)
    ).fetchone()
    return DedupeRule() if row is None else DedupeRule(row[0], row[1])


def window_start(conn: psycopg.Connection[Any], rule: DedupeRule) -> dt.datetime | None:
    """Calls at or after this instant block a number (None: no window). The database's clock."""
    if rule.window_days is None:
        return None
    row = conn.execute("SELECT now() - make_interval(days => %s)", (rule.window_days,)).fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def create(
    conn: psycopg.Connection[Any],
    project_id: int,
    provider_id: int | None,
    src: LoadSource,
    rule: DedupeRule,
) -> int:
    row = conn.execute(
        """
        INSERT INTO number_loads (kind, project_id, provider_id, sftp_job_id, source,
                                  dedupe_scope, dedupe_window_days, created_by)
        -- An SFTP load is by whoever requested its job (NULL: the inbox sensor).
        VALUES (%s, %s, %s, %s, %s, %s, %s,
                COALESCE(%s, (SELECT requested_by FROM sftp_jobs WHERE id = %s)))
        RETURNING id
        """,
        (
            src.kind,
            project_id,
            provider_id,
            src.sftp_job_id,
            src.source,
            rule.scope,
            rule.window_days,
            src.created_by,
            src.sftp_job_id,
        ),
    ).fetchone()
    assert row is not None
    return int(row[0])


COUNTS = (
    "read",
    "inserted",
    "duplicate_in_input",
    "already_present",
    "duplicate_elsewhere",
    "invalid",
)


def finish(conn: psycopg.Connection[Any], load_id: int, counts: Mapping[str, int]) -> None:
    """Store the load's counts (same transaction as the load)."""
    conn.execute(
        """
        UPDATE number_loads SET rows_read = %s, inserted = %s, duplicate_in_input = %s,
               already_present = %s, duplicate_elsewhere = %s, invalid = %s
        WHERE id = %s
        """,
        (*(int(counts[k]) for k in COUNTS), load_id),
    )
