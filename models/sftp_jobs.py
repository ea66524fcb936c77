"""The `sftp_jobs` lifecycle, one home for the API, the sensors and the assets.

    pending --claim--> running --complete--> completed          (final: never redone)
       |                  |
       +------fail--------+-----fail-------> failed --claim--> running   (a retry)

A requester (the API, the inbox sensor, a partition materialised in the UI) creates the row; the
run claims it, and completes or fails it. A job is only failed while pending or running, so a
late failure report can never turn a completed import red. Every "when it happened" column is
`clock_timestamp()`, not `now()`: the import completes inside a transaction that may have begun
minutes earlier, and `now()` is that transaction's start.

Who may import into a project is models/sftp_access.py.

Everything takes a psycopg connection (the API passes its session's own connection, so a request
row and its audit row still commit together).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row

ACTOR = "system:dagster"
# Names Dagster runs refer to jobs by (strings only: models/ imports no Dagster).
JOB_TAG = "numbase/sftp_job_id"
IMPORT_JOB = "sftp_import_job"
EXPORT_JOB = "sftp_export_job"
INBOX_PARTITIONS = "sftp_inbox_files"
INBOX_SOURCE = "inbox"  # params.source of rows the inbox sensor creates (it launches those)

ACTIVE = ("pending", "running")
STATUSES = ("pending", "running", "completed", "failed")
FINAL = ("completed",)
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "pending": ("running", "failed"),
    "running": ("completed", "failed"),
    "failed": ("running",),
    "completed": (),
}


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
    stats: dict[str, Any]
    dagster_run_id: str | None
    content_sha256: str | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> JobRow:
        return cls(**{**row, "params": row["params"] or {}, "stats": row["stats"] or {}})


_COLUMNS = (
    "id, job_type, status, project_id, provider_id, file_name, file_path, params, stats,"
    " dagster_run_id, content_sha256"
)


def audit(conn: psycopg.Connection, action: str, job_id: int, changes: dict[str, Any]) -> None:
    conn.execute(
        "INSERT INTO audit_log (actor, action, entity_type, entity_id, changes, created_at) "
        "VALUES (%s, %s, 'sftp_job', %s, %s::jsonb, clock_timestamp())",
        (ACTOR, action, job_id, json.dumps(changes, default=str)),
    )


def _one(conn: psycopg.Connection, sql: str, params: tuple[Any, ...]) -> JobRow | None:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(sql, params).fetchone()
    return JobRow.from_row(row) if row else None


def _many(conn: psycopg.Connection, sql: str, params: tuple[Any, ...]) -> list[JobRow]:
    with conn.cursor(row_factory=dict_row) as cur:
        return [JobRow.from_row(r) for r in cur.execute(sql, params).fetchall()]


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
    requested_by: int | None = None,
) -> int:
    """A new job (pending, or failed at once for a delivery refused on sight)."""
    assert status in ("pending", "failed"), status
    file_name = file_path.rsplit("/", 1)[-1] if file_path else None
    row = conn.execute(
        "INSERT INTO sftp_jobs (job_type, project_id, provider_id, file_name, file_path, params,"
        " status, error_log, requested_by, completed_at) "
        "VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s,"
        " CASE WHEN %s = 'failed' THEN clock_timestamp() END) RETURNING id",
        (
            job_type, project_id, provider_id, file_name, file_path, json.dumps(params or {}),
            status, error, requested_by, status,
        ),
    ).fetchone()  # fmt: skip
    assert row is not None
    if status == "failed":
        audit(conn, f"sftp_{job_type}.failed", row[0], {"file_path": file_path, "error": error})
    return int(row[0])


def get_job(conn: psycopg.Connection, job_id: int, *, lock: bool = False) -> JobRow | None:
    return _one(
        conn,
        f"SELECT {_COLUMNS} FROM sftp_jobs WHERE id = %s" + (" FOR UPDATE" if lock else ""),
        (job_id,),
    )


def pending_jobs(conn: psycopg.Connection, job_type: str, limit: int = 50) -> list[JobRow]:
    """Pending requests the inbox sensor does not launch itself, oldest first. A retry waiting
    for its time (next_retry_at set) is the recovery sensor's (models/job_recovery.py)."""
    return _many(
        conn,
        f"SELECT {_COLUMNS} FROM sftp_jobs WHERE status = 'pending' AND job_type = %s"
        " AND next_retry_at IS NULL"
        " AND coalesce(params->>'source', '') <> %s ORDER BY id LIMIT %s",
        (job_type, INBOX_SOURCE, limit),
    )


def find_imports(
    conn: psycopg.Connection, file_path: str, statuses: tuple[str, ...]
) -> list[JobRow]:
    """Imports of this inbox path in these statuses, newest first."""
    return _many(
        conn,
        f"SELECT {_COLUMNS} FROM sftp_jobs WHERE job_type = 'import' AND file_path = %s"
        " AND status = ANY(%s) ORDER BY id DESC",
        (file_path, list(statuses)),
    )


def active_import(conn: psycopg.Connection, file_path: str) -> int | None:
    """The job already importing this path (a second request for it is a conflict)."""
    jobs = find_imports(conn, file_path, ACTIVE)
    return jobs[0].id if jobs else None


def completed_imports_of_size(
    conn: psycopg.Connection, project_id: int, provider_id: int | None, size: int
) -> list[JobRow]:
    """Completed imports into the same project/provider whose file had this many bytes: the
    only ones identical bytes could belong to (so the sensor hashes a file only then)."""
    return _many(
        conn,
        f"SELECT {_COLUMNS} FROM sftp_jobs WHERE job_type = 'import' AND status = 'completed'"
        " AND project_id = %s AND provider_id IS NOT DISTINCT FROM %s"
        " AND content_sha256 IS NOT NULL AND (stats->>'bytes')::bigint = %s ORDER BY id DESC",
        (project_id, provider_id, size),
    )


def claim(conn: psycopg.Connection, job_id: int, run_id: str) -> JobRow | None:
    """pending/failed -> running for this run; None if it already completed (never redone)."""
    return _one(
        conn,
        "UPDATE sftp_jobs SET status = 'running', dagster_run_id = %s, error_log = NULL,"
        " started_at = coalesce(started_at, clock_timestamp()), completed_at = NULL"
        f" WHERE id = %s AND status <> 'completed' RETURNING {_COLUMNS}",
        (run_id, job_id),
    )


def set_path(conn: psycopg.Connection, job_id: int, file_path: str) -> None:
    """Where the job's file is now (normalised, or moved to rejected/)."""
    conn.execute(
        "UPDATE sftp_jobs SET file_path = %s, file_name = %s WHERE id = %s",
        (file_path, file_path.rsplit("/", 1)[-1], job_id),
    )


def name_export(conn: psycopg.Connection, job_id: int, stem: str, file_path: str) -> None:
    """The outbox file an export will write (params.name is what the asset reads)."""
    conn.execute(
        "UPDATE sftp_jobs SET params = params || jsonb_build_object('name', %s::text),"
        " file_path = %s, file_name = %s WHERE id = %s",
        (stem, file_path, file_path.rsplit("/", 1)[-1], job_id),
    )


def set_content(conn: psycopg.Connection, job_id: int, sha256: str) -> None:
    """The sha256 of the bytes this job read: a delivery's identity."""
    conn.execute("UPDATE sftp_jobs SET content_sha256 = %s WHERE id = %s", (sha256, job_id))


def complete(
    conn: psycopg.Connection,
    job_id: int,
    *,
    records: int,
    stats: dict[str, Any],
    action: str,
    file_path: str | None = None,
) -> None:
    row = conn.execute(
        "UPDATE sftp_jobs SET status = 'completed', records_count = %s, stats = %s::jsonb,"
        " completed_at = clock_timestamp(), error_log = NULL,"
        " file_path = coalesce(%s, file_path), file_name = coalesce(%s, file_name)"
        " WHERE id = %s AND status = 'running' RETURNING id",
        (
            records,
            json.dumps(stats, default=str),
            file_path,
            file_path.rsplit("/", 1)[-1] if file_path else None,
            job_id,
        ),
    ).fetchone()
    if row is None:
        raise RuntimeError(f"sftp job {job_id} is not running; it cannot complete")
    audit(conn, action, job_id, stats)


def note(conn: psycopg.Connection, job_id: int, **stats: Any) -> None:
    """Merge facts learnt after completion (where the file was archived) into stats."""
    conn.execute(
        "UPDATE sftp_jobs SET stats = coalesce(stats, '{}'::jsonb) || %s::jsonb WHERE id = %s",
        (json.dumps(stats, default=str), job_id),
    )


def fail(
    conn: psycopg.Connection,
    job_id: int,
    error: str,
    *,
    run_id: str | None = None,
    stats: dict[str, Any] | None = None,
) -> bool:
    """Fail a job that is not finished yet; False if it already was (completed or failed)."""
    row = conn.execute(
        "UPDATE sftp_jobs SET status = 'failed', error_log = %s, completed_at = clock_timestamp(),"
        " dagster_run_id = coalesce(%s, dagster_run_id), stats = coalesce(%s::jsonb, stats)"
        " WHERE id = %s AND status IN ('pending', 'running') RETURNING job_type",
        (error[:20000], run_id, json.dumps(stats) if stats else None, job_id),
    ).fetchone()
    if row is None:
        return False
    audit(conn, f"sftp_{row[0]}.failed", job_id, {"error": error[:2000]})
    return True


def export_holding(conn: psycopg.Connection, file_path: str) -> int | None:
    """The export that owns (or is writing) this outbox path: a second one is a conflict.
    Only a failed export leaves its name free (it never renamed its file into place)."""
    row = conn.execute(
        "SELECT id FROM sftp_jobs WHERE job_type = 'export' AND file_path = %s"
        " AND status <> 'failed' ORDER BY id LIMIT 1",
        (file_path,),
    ).fetchone()
    return int(row[0]) if row else None
