"""Recovery of `sftp_jobs` whose run failed or vanished: liveness, attempts, retries.

The rules, in one place (used by the import asset, the run-status sensors and the reconcile
sensor alike):

* **Liveness.** A process that works on a Dagster run holds a session-level advisory lock keyed
  by the run id on its own connection (`hold_run_lock`). PostgreSQL drops the lock the moment
  that process dies (its socket closes), so "the job is `running` for run R and nobody holds R's
  lock" means no process will ever finish it: the reconcile sensor ends that attempt. A job
  whose lock is held is left alone whatever Dagster says about the run, because its loader may
  still commit (a run worker killed under a surviving step process) and the row must follow
  what committed, not what the run status claims.
* **Ownership.** An attempt is ended only by or for the run that owns it (`dagster_run_id`), or,
  while still `pending`, for the attempt number the run was launched for (run tag
  `numbase/attempt`, absent on first runs = 1). A late signal about an old run never touches a
  newer attempt.
* **Retry.** A transient failure (database restart, SFTP drop, a run worker or code server that
  died) turns the job back into `pending` with `attempt + 1` and `next_retry_at` after an
  exponential backoff, bounded by `RetryPolicy.max_attempts`; the reconcile sensor launches it
  then. A final failure, or a transient one on the last attempt, leaves it `failed` with the
  reason and the number of attempts.

SQL only: no Dagster import (models/ imports nothing of ours outside models/).
"""

from __future__ import annotations

import datetime as dt
import json
import zlib
from dataclasses import dataclass
from typing import Any

import psycopg

ACTOR = "system:dagster"
ATTEMPT_TAG = "numbase/attempt"
# First key of the two-key advisory locks: the run-liveness namespace ("nbrl").
RUN_LOCK_NAMESPACE = 0x6E62726C


@dataclass(frozen=True)
class RetryPolicy:
    """Automatic retries of transient failures: `max_attempts` runs in all, the n-th retry
    waiting `base_delay_seconds * 2**(n-1)`, at most `max_delay_seconds`."""

    max_attempts: int = 3
    base_delay_seconds: float = 60.0
    max_delay_seconds: float = 900.0

    def delay(self, failed_attempt: int) -> float:
        return min(self.max_delay_seconds, self.base_delay_seconds * 2 ** (failed_attempt - 1))

    @classmethod
    def from_settings(cls, settings: Any) -> RetryPolicy:
        return cls(
            max_attempts=settings.import_retry_attempts,
            base_delay_seconds=settings.import_retry_delay_seconds,
        )


NO_RETRY = RetryPolicy(max_attempts=1)


def policy_for(job_type: str, settings: Any) -> RetryPolicy:
    """Imports retry per NUMBASE_IMPORT_RETRY_*; exports are not retried (a new request is
    cheap and its outbox name may have been taken meanwhile)."""
    return RetryPolicy.from_settings(settings) if job_type == "import" else NO_RETRY


def run_lock_key(run_id: str) -> int:
    """A stable signed 32-bit key for a run id (crc32; a collision only delays recovery)."""
    value = zlib.crc32(run_id.encode())
    return value - (1 << 32) if value >= 1 << 31 else value


def hold_run_lock(conn: psycopg.Connection, run_id: str) -> bool:
    """Take the run's liveness lock on `conn` (autocommit) until the connection closes. False
    if another process of the same run holds it already (it speaks for the run; never wait).

    Needs a session of its own: through a transaction-pooling pgbouncer the lock would stay
    with a server connection, not with this process."""
    row = conn.execute(
        "SELECT pg_try_advisory_lock(%s, %s)", (RUN_LOCK_NAMESPACE, run_lock_key(run_id))
    ).fetchone()
    return bool(row and row[0])


def run_alive(conn: psycopg.Connection, run_id: str) -> bool:
    """Does some process hold the run's liveness lock? Read from pg_locks in one statement,
    taking nothing: safe on any connection, a transaction-pooled one included (a try-lock
    and an unlock could land on two different server connections there)."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " AND classid = (%s::int)::oid AND objid = (%s::int)::oid AND objsubid = 2)",
        (RUN_LOCK_NAMESPACE, run_lock_key(run_id)),
    ).fetchone()
    assert row is not None
    return bool(row[0])


@dataclass(frozen=True)
class Outcome:
    """What `end_attempt` did: the job's new status ('pending' = retry scheduled), the attempt
    that ended, and when the retry may start."""

    job_type: str
    status: str
    attempt: int
    next_retry_at: dt.datetime | None

    @property
    def retrying(self) -> bool:
        return self.status == "pending"


def end_attempt(
    conn: psycopg.Connection,
    job_id: int,
    error: str,
    *,
    run_id: str | None,
    transient: bool,
    policy: RetryPolicy,
    attempt: int | None = None,
    stats: dict[str, Any] | None = None,
) -> Outcome | None:
    """End the job's current attempt as failed: schedule a retry (transient, attempts left) or
    fail the job for good. None if this run/attempt does not own the job (any more): completed,
    failed, claimed by another run, or already moved on to a later attempt.

    `run_id` alone: the job must be `running` for that run (the asset, the reconciler).
    `attempt` too: a `pending` job at that attempt also counts (its run died before claiming).
    Raises psycopg.errors.LockNotAvailable while a load transaction holds the row.
    """
    with conn.transaction():
        # The row is locked for the whole load transaction of a loader: callers' connections
        # carry the configured lock timeout (models/db.py), so a sensor tick never waits that
        # long; LockNotAvailable means "busy, ask again later".
        row = conn.execute(
            "SELECT job_type, status, attempt, dagster_run_id FROM sftp_jobs"
            " WHERE id = %s FOR UPDATE",
            (job_id,),
        ).fetchone()
        if row is None:
            return None
        job_type, status, current, owner = row
        owned = status == "running" and run_id is not None and owner == run_id
        unclaimed = status == "pending" and attempt is not None and attempt == current
        if not (owned or unclaimed):
            return None
        retry = transient and current < policy.max_attempts
        if retry:
            delay = policy.delay(current)
            note = (
                f"attempt {current} of {policy.max_attempts} failed: {error}\n"
                f"retrying automatically in {delay:.0f} s"
            )
            new = conn.execute(
                "UPDATE sftp_jobs SET status = 'pending', attempt = attempt + 1,"
                " next_retry_at = clock_timestamp() + make_interval(secs => %s),"
                " error_log = %s, dagster_run_id = coalesce(%s, dagster_run_id),"
                " stats = coalesce(%s::jsonb, stats), updated_at = clock_timestamp()"
                " WHERE id = %s RETURNING status, next_retry_at",
                (delay, note[:20000], run_id, _json(stats), job_id),
            ).fetchone()
        else:
            note = error
            if current > 1:
                note = f"failed after {current} attempts; last: {error}"
            elif transient:
                note = f"{error}\n(not retried automatically: request it again)"
            new = conn.execute(
                "UPDATE sftp_jobs SET status = 'failed', next_retry_at = NULL,"
                " error_log = %s, completed_at = clock_timestamp(),"
                " dagster_run_id = coalesce(%s, dagster_run_id),"
                " stats = coalesce(%s::jsonb, stats), updated_at = clock_timestamp()"
                " WHERE id = %s RETURNING status, next_retry_at",
                (note[:20000], run_id, _json(stats), job_id),
            ).fetchone()
        assert new is not None
        action = f"sftp_{job_type}.retry_scheduled" if retry else f"sftp_{job_type}.failed"
        _audit(
            conn,
            action,
            job_id,
            {
                "error": error[:2000],
                "attempt": current,
                "transient": transient,
                "run_id": run_id,
                "next_retry_at": new[1],
            },
        )
    return Outcome(job_type, new[0], current, new[1])


@dataclass(frozen=True)
class RunningJob:
    id: int
    job_type: str
    run_id: str | None
    attempt: int


def running_jobs(conn: psycopg.Connection, limit: int = 200) -> list[RunningJob]:
    rows = conn.execute(
        "SELECT id, job_type, dagster_run_id, attempt FROM sftp_jobs WHERE status = 'running'"
        " ORDER BY id LIMIT %s",
        (limit,),
    ).fetchall()
    return [RunningJob(*r) for r in rows]


@dataclass(frozen=True)
class DueRetry:
    id: int
    job_type: str
    file_path: str | None
    attempt: int


def due_retries(conn: psycopg.Connection, job_type: str, limit: int = 50) -> list[DueRetry]:
    """Pending retries whose backoff is over, oldest first."""
    rows = conn.execute(
        "SELECT id, job_type, file_path, attempt FROM sftp_jobs"
        " WHERE status = 'pending' AND next_retry_at IS NOT NULL"
        " AND next_retry_at <= clock_timestamp() AND job_type = %s ORDER BY next_retry_at LIMIT %s",
        (job_type, limit),
    ).fetchall()
    return [DueRetry(*r) for r in rows]


def retry_run_key(job_id: int, attempt: int) -> str:
    """One run per retry attempt (a sensor tick repeated after a crash asks for the same)."""
    return f"sftp_job:{job_id}:attempt:{attempt}"


def note_outcome_mismatch(conn: psycopg.Connection, job_id: int, run_id: str, status: str) -> bool:
    """Dagster says run `run_id` ended `status`, but it committed the job: record that in the
    job's stats (the row, not the run status, tells what committed). True if newly noted."""
    row = conn.execute(
        "UPDATE sftp_jobs SET stats = coalesce(stats, '{}'::jsonb) || jsonb_build_object("
        "'dagster_run_status', %s::text, 'note', 'committed; the Dagster run was reported '"
        " || %s::text || ' afterwards (its process died after the commit)')"
        " WHERE id = %s AND status = 'completed' AND dagster_run_id = %s"
        " AND coalesce(stats->>'dagster_run_status', '') <> %s::text RETURNING id",
        (status, status, job_id, run_id, status),
    ).fetchone()
    return row is not None


def _json(value: dict[str, Any] | None) -> str | None:
    return json.dumps(value, default=str) if value else None


def _audit(conn: psycopg.Connection, action: str, job_id: int, changes: dict[str, Any]) -> None:
    conn.execute(
        "INSERT INTO audit_log (actor, action, entity_type, entity_id, changes) "
        "VALUES (%s, %s, 'sftp_job', %s, %s::jsonb)",
        (ACTOR, action, job_id, json.dumps(changes, default=str)),
    )
