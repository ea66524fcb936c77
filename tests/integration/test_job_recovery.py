"""The recovery rules of models/job_recovery.py against PostgreSQL: only the owner of an attempt
ends it, retries are bounded with a doubling wait, liveness is a lock a dead process loses."""

from __future__ import annotations

import time

import psycopg
import pytest
from sqlalchemy import Engine, text

from models import job_recovery
from models.job_recovery import RetryPolicy

POLICY = RetryPolicy(max_attempts=3, base_delay_seconds=10, max_delay_seconds=15)


def _job(db: Engine, **values: object) -> int:
    values = {"status": "running", "dagster_run_id": "run-a", "attempt": 1, **values}
    with db.begin() as conn:
        return int(
            conn.execute(
                text(
                    "INSERT INTO sftp_jobs (job_type, file_path, status, dagster_run_id, attempt)"
                    " VALUES ('import', 'inbox/p/a.csv', :status, :dagster_run_id, :attempt)"
                    " RETURNING id"
                ),
                values,
            ).scalar_one()
        )


def _row(db: Engine, job_id: int) -> dict:  # type: ignore[type-arg]
    with db.connect() as conn:
        return dict(
            conn.execute(text("SELECT * FROM sftp_jobs WHERE id = :i"), {"i": job_id})
            .mappings()
            .one()
        )


@pytest.fixture
def conn(db: Engine, database_url: str):  # type: ignore[no-untyped-def]
    with psycopg.connect(database_url, autocommit=True) as c:
        yield c


def test_only_the_owning_run_ends_a_running_attempt(db: Engine, conn) -> None:  # type: ignore[no-untyped-def]
    job_id = _job(db)
    for stranger in ({"run_id": "run-b"}, {"run_id": None, "attempt": 1}):
        assert (
            job_recovery.end_attempt(conn, job_id, "x", transient=True, policy=POLICY, **stranger)  # type: ignore[arg-type]
            is None
        )
    assert _row(db, job_id)["status"] == "running"
    out = job_recovery.end_attempt(
        conn, job_id, "db gone", run_id="run-a", transient=True, policy=POLICY
    )
    assert out is not None and (out.status, out.attempt) == ("pending", 1)
    # A late report about the same run does not end attempt 2 as well.
    assert (
        job_recovery.end_attempt(
            conn, job_id, "late", run_id="run-a", attempt=1, transient=True, policy=POLICY
        )
        is None
    )
    assert _row(db, job_id)["attempt"] == 2


def test_retries_are_bounded_with_a_doubling_capped_wait(db: Engine, conn) -> None:  # type: ignore[no-untyped-def]
    assert [POLICY.delay(n) for n in (1, 2, 3)] == [10, 15, 15]
    job_id = _job(db, status="pending", dagster_run_id=None)
    waits = []
    for attempt in (1, 2):
        out = job_recovery.end_attempt(
            conn,
            job_id,
            f"boom {attempt}",
            run_id=f"r{attempt}",
            attempt=attempt,
            transient=True,
            policy=POLICY,
        )
        assert out is not None and out.retrying
        row = _row(db, job_id)
        waits.append((row["next_retry_at"] - row["updated_at"]).total_seconds())
    assert waits == pytest.approx([10, 15], abs=1)
    out = job_recovery.end_attempt(
        conn, job_id, "boom 3", run_id="r3", attempt=3, transient=True, policy=POLICY
    )
    assert out is not None and out.status == "failed"
    row = _row(db, job_id)
    assert row["error_log"] == "failed after 3 attempts; last: boom 3"
    assert row["next_retry_at"] is None and row["completed_at"] is not None
    with db.connect() as c:
        actions = (
            c.execute(
                text("SELECT action FROM audit_log WHERE entity_id = :i ORDER BY id"), {"i": job_id}
            )
            .scalars()
            .all()
        )
    assert actions == ["sftp_import.retry_scheduled"] * 2 + ["sftp_import.failed"]


def test_a_final_failure_is_not_retried_and_a_completed_job_never_fails(db: Engine, conn) -> None:  # type: ignore[no-untyped-def]
    job_id = _job(db)
    out = job_recovery.end_attempt(
        conn, job_id, "no phone column", run_id="run-a", transient=False, policy=POLICY
    )
    assert out is not None and (out.status, _row(db, job_id)["attempt"]) == ("failed", 1)
    done = _job(db, status="completed")
    assert (
        job_recovery.end_attempt(conn, done, "x", run_id="run-a", transient=True, policy=POLICY)
        is None
    )
    assert job_recovery.note_outcome_mismatch(conn, done, "run-a", "FAILURE")
    assert not job_recovery.note_outcome_mismatch(conn, done, "run-a", "FAILURE")  # once
    assert _row(db, done)["status"] == "completed"


def test_liveness_is_a_lock_the_holder_loses_when_its_connection_dies(
    conn,
    database_url: str,  # type: ignore[no-untyped-def]
) -> None:
    holder = psycopg.connect(database_url, autocommit=True)
    job_recovery.hold_run_lock(holder, "run-live")
    assert job_recovery.run_alive(conn, "run-live")
    assert job_recovery.run_alive(conn, "run-live")  # probing does not take it over
    assert not job_recovery.run_alive(conn, "run-other")
    pid = holder.info.backend_pid
    conn.execute("SELECT pg_terminate_backend(%s)", (pid,))  # the process is gone
    holder.close()
    deadline = time.monotonic() + 10
    while job_recovery.run_alive(conn, "run-live") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not job_recovery.run_alive(conn, "run-live")
