"""The `sftp_jobs` lifecycle in SQL: pending -> running -> completed | failed.

An API (or anything else) requests work by inserting a `pending` row with job_type,
project_id, provider_id, file_path and params; the sensors and assets here do the rest.
Every status change that ends a job writes an audit row (actor "system:dagster").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row

ACTOR = "system:dagster"
JOB_TAG = "numbase/sftp_job_id"
IMPORT_JOB = "sftp_import_job"
EXPORT_JOB = "sftp_export_job"
INBOX_PARTITIONS = "sftp_inbox_files"
INBOX_SOURCE = "inbox"  # params.source of rows the inbox sensor creates (it launches those)


@dataclass
class JobRow:
    id: int
    job_type: str
    status: str
    project_id: int | None
    provider_id: int | None
    file_name: str | None
    file_path: str | None
    params: dict[str, Any]
    dagster_run_id: str | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> JobRow:
        return cls(
            id=row["id"],
            job_type=row["job_type"],
            status=row["status"],
            project_id=row["project_id"],
            provider_id=row["provider_id"],
            file_name=row["file_name"],
            file_path=row["file_path"],
            params=row["params"] or {},
            dagster_run_id=row["dagster_run_id"],
        )


_COLUMNS = (
    "id, job_type, status, project_id, provider_id, file_name, file_path, params, dagster_run_id"
)


def _audit(conn: psycopg.Connection, action: str, job_id: int, changes: dict[str, Any]) -> None:
    conn.execute(
        "INSERT INTO audit_log (actor, action, entity_type, entity_id, changes) "
        "VALUES (%s, %s, 'sftp_job', %s, %s::jsonb)",
        (ACTOR, action, job_id, json.dumps(changes, default=str)),
    )


def create_job(
    conn: psycopg.Connection,
    *,
    job_type: str,
    project_id: int | None,
    provider_id: int | None = None,
    file_path: str | None = None,
    params: dict[str, Any] | None = None,
    status: str = "pending",
    error: str | None = None,
) -> int:
    file_name = file_path.rsplit("/", 1)[-1] if file_path else None
    row = conn.execute(
        "INSERT INTO sftp_jobs (job_type, project_id, provider_id, file_name, file_path, params,"
        " status, error_log, completed_at) "
        "VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s, %s,"
        " CASE WHEN %s IN ('completed', 'failed') THEN now() END) RETURNING id",
        (
            job_type,
            project_id,
            provider_id,
            file_name,
            file_path,
            json.dumps(params or {}),
            status,
            error,
            status,
        ),
    ).fetchone()
    assert row is not None
    if status == "failed":
        _audit(conn, f"sftp_{job_type}.failed", row[0], {"file_path": file_path, "error": error})
    return int(row[0])


def get_job(conn: psycopg.Connection, job_id: int, *, lock: bool = False) -> JobRow | None:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"SELECT {_COLUMNS} FROM sftp_jobs WHERE id = %s" + (" FOR UPDATE" if lock else ""),
            (job_id,),
        ).fetchone()
    return JobRow.from_row(row) if row else None


def pending_jobs(conn: psycopg.Connection, job_type: str, limit: int = 50) -> list[JobRow]:
    """Pending requests the inbox sensor does not launch itself, oldest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"SELECT {_COLUMNS} FROM sftp_jobs WHERE status = 'pending' AND job_type = %s"
            " AND coalesce(params->>'source', '') <> %s ORDER BY id LIMIT %s",
            (job_type, INBOX_SOURCE, limit),
        ).fetchall()
    return [JobRow.from_row(r) for r in rows]


def find_import(
    conn: psycopg.Connection, file_path: str, statuses: tuple[str, ...]
) -> list[JobRow]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"SELECT {_COLUMNS} FROM sftp_jobs WHERE job_type = 'import' AND file_path = %s"
            " AND status = ANY(%s) ORDER BY id DESC",
            (file_path, list(statuses)),
        ).fetchall()
    return [JobRow.from_row(r) for r in rows]


def mark_running(conn: psycopg.Connection, job_id: int, run_id: str) -> JobRow | None:
    """Claim the job for a run; None if it already completed (a re-run must not redo it)."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "UPDATE sftp_jobs SET status = 'running', dagster_run_id = %s, error_log = NULL,"
            " started_at = coalesce(started_at, now()), completed_at = NULL"
            f" WHERE id = %s AND status <> 'completed' RETURNING {_COLUMNS}",
            (run_id, job_id),
        ).fetchone()
    return JobRow.from_row(row) if row else None


def mark_completed(
    conn: psycopg.Connection,
    job_id: int,
    *,
    records: int,
    stats: dict[str, Any],
    file_path: str | None = None,
    action: str,
) -> None:
    conn.execute(
        "UPDATE sftp_jobs SET status = 'completed', records_count = %s, stats = %s::jsonb,"
        " completed_at = now(), error_log = NULL, file_path = coalesce(%s, file_path),"
        " file_name = coalesce(%s, file_name) WHERE id = %s",
        (
            records,
            json.dumps(stats, default=str),
            file_path,
            file_path.rsplit("/", 1)[-1] if file_path else None,
            job_id,
        ),
    )
    _audit(conn, action, job_id, stats)


def mark_failed(
    conn: psycopg.Connection,
    job_id: int,
    error: str,
    *,
    run_id: str | None = None,
    stats: dict[str, Any] | None = None,
) -> bool:
    """Fail a job that is not finished yet; False if it already was (completed or failed)."""
    row = conn.execute(
        "UPDATE sftp_jobs SET status = 'failed', error_log = %s, completed_at = now(),"
        " dagster_run_id = coalesce(%s, dagster_run_id), stats = coalesce(%s::jsonb, stats)"
        " WHERE id = %s AND status IN ('pending', 'running') RETURNING job_type",
        (error[:20000], run_id, json.dumps(stats) if stats else None, job_id),
    ).fetchone()
    if row is None:
        return False
    _audit(conn, f"sftp_{row[0]}.failed", job_id, {"error": error[:2000]})
    return True


def live_project(conn: psycopg.Connection, *, code: str | None = None, id: int | None = None):
    """(id, code) of a project that exists and is not deleted, else None."""
    if code is not None:
        row = conn.execute(
            "SELECT id, code FROM projects WHERE code = %s AND NOT is_deleted", (code,)
        ).fetchone()
    else:
        row = conn.execute(
            "SELECT id, code FROM projects WHERE id = %s AND NOT is_deleted", (id,)
        ).fetchone()
    return (int(row[0]), str(row[1])) if row else None


def provider_id_by_code(conn: psycopg.Connection, code: str) -> int | None:
    row = conn.execute("SELECT id FROM providers WHERE code = %s", (code,)).fetchone()
    return int(row[0]) if row else None
