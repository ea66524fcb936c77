"""Recovery of imports whose run failed, vanished or was canceled (issue 12, item 7), against a
real Dagster instance, the real SFTP server and PostgreSQL. The platform-level kills (run
worker, code server) are in tests/e2e/test_recovery.py."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from dagster import DagsterEventType, DagsterRunStatus, build_run_status_sensor_context
from dagster._core.test_utils import create_run_for_test

from models import job_recovery, sftp_jobs
from sensors.inbox import sftp_inbox_sensor
from sensors.reconcile import sftp_job_recovery_sensor
from sensors.run_status import sftp_job_canceled_sensor, sftp_job_failure_sensor
from tests.dagster.conftest import Harness, csv_bytes, phones


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUMBASE_IMPORT_RETRY_ATTEMPTS", "3")
    monkeypatch.setenv("NUMBASE_IMPORT_RETRY_DELAY_SECONDS", "0")


def _request(h: Harness):  # type: ignore[no-untyped-def]
    for _ in range(3):
        out = h.tick(sftp_inbox_sensor)
        if out.run_requests:
            return out.run_requests[0]
    raise AssertionError("the inbox sensor requested no run")


def _running_job(h: Harness, factory, code: str, run_status: DagsterRunStatus):  # type: ignore[no-untyped-def]
    """A job `running` for a run in the instance with the given status, and no live process:
    what a killed code server (with its run worker) leaves behind."""
    project = factory.project(code=code)
    h.upload(f"inbox/{code}/a.csv", csv_bytes([["phone"], *[[p] for p in phones(50)]]))
    request = _request(h)
    job_id = int(request.tags[sftp_jobs.JOB_TAG])
    run = create_run_for_test(
        h.instance, job_name=sftp_jobs.IMPORT_JOB, status=run_status, tags=dict(request.tags)
    )
    with h.engine.begin() as conn:
        conn.exec_driver_sql(
            "UPDATE sftp_jobs SET status = 'running', dagster_run_id = %(r)s,"
            " started_at = now() WHERE id = %(i)s",
            {"r": run.run_id, "i": job_id},
        )
    return project, job_id, run


def _retry(h: Harness) -> object:
    """The recovery sensor's retry request for the one due job."""
    [retry] = h.tick(sftp_job_recovery_sensor).run_requests
    return retry


def test_database_killed_mid_load_is_retried_and_imports_exactly_once(
    harness: Harness, factory, database_url: str
) -> None:
    """A database restart (the import's backend terminated mid-COPY) rolls the attempt back;
    the recovery sensor retries it after the backoff and the retry loads every row once."""
    project = factory.project(code="dbretry")
    rows = phones(150_000)
    harness.upload("inbox/dbretry/big.csv", csv_bytes([["phone"], *[[p] for p in rows]]))
    request = _request(harness)
    job_id = int(request.tags[sftp_jobs.JOB_TAG])
    killed: list[int] = []

    def kill() -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            deadline = time.monotonic() + 60
            while not killed and time.monotonic() < deadline:
                row = conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = %s"
                    " AND state = 'active' AND (query ILIKE 'COPY%%' OR query ILIKE '%%INSERT%%')",
                    (f"numbase-import:{job_id}",),
                ).fetchone()
                if row:
                    conn.execute("SELECT pg_terminate_backend(%s)", (row[0],))
                    killed.append(row[0])
                time.sleep(0.01)

    killer = threading.Thread(target=kill)
    killer.start()
    first = harness.execute(request)
    killer.join()
    assert killed and not first.success
    job = harness.job(job_id)
    assert (job["status"], job["attempt"]) == ("pending", 2), job
    assert "attempt 1 of 3 failed" in job["error_log"] and "rolled back" in job["error_log"]
    assert job["next_retry_at"] is not None and harness.count(project.id) == 0

    # The failure sensor arriving late changes nothing: the attempt is already ended.
    event = next(e for e in first.all_events if e.event_type == DagsterEventType.PIPELINE_FAILURE)
    with build_run_status_sensor_context(
        sensor_name="sftp_job_failure_sensor",
        dagster_instance=harness.instance,
        dagster_run=first.dagster_run,
        dagster_event=event,
    ) as ctx:
        sftp_job_failure_sensor(ctx.for_run_failure())
    assert harness.job(job_id)["attempt"] == 2

    retry = _retry(harness)
    assert retry.run_key == f"sftp_job:{job_id}:attempt:2"  # type: ignore[attr-defined]
    assert retry.tags[job_recovery.ATTEMPT_TAG] == "2"  # type: ignore[attr-defined]
    second = harness.execute(retry)  # type: ignore[arg-type]
    assert second.success
    job = harness.job(job_id)
    assert (job["status"], job["records_count"], job["attempt"]) == ("completed", 150_000, 2)
    assert job["dagster_run_id"] == second.run_id
    assert harness.count(project.id) == 150_000
    assert harness.exists("processed/dbretry/big.csv")
    assert not harness.tick(sftp_job_recovery_sensor).run_requests  # nothing left to retry
    actions = [
        r["action"]
        for r in harness.rows(
            "SELECT action FROM audit_log WHERE entity_id = :i ORDER BY id", i=job_id
        )
    ]
    assert actions == ["sftp_import.retry_scheduled", "sftp_import.completed"]


def test_transient_failures_end_failed_with_the_reason_after_the_last_attempt(
    harness: Harness, factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NUMBASE_IMPORT_RETRY_ATTEMPTS", "2")
    project = factory.project(code="flaky")
    harness.upload("inbox/flaky/a.csv", csv_bytes([["phone"], *[[p] for p in phones(10)]]))
    request = _request(harness)
    job_id = int(request.tags[sftp_jobs.JOB_TAG])
    harness.server.stop()  # SFTP down for every in-run retry of both attempts
    try:
        first = harness.execute(request)
        assert not first.success
        job = harness.job(job_id)
        assert (job["status"], job["attempt"]) == ("pending", 2)
        assert "SFTP unavailable" in job["error_log"]
        second = harness.execute(_retry(harness))  # type: ignore[arg-type]
        assert not second.success
    finally:
        harness.server.start()
    job = harness.job(job_id)
    assert (job["status"], job["attempt"]) == ("failed", 2)
    assert job["error_log"].startswith("failed after 2 attempts; last: SFTP unavailable")
    assert job["next_retry_at"] is None and job["completed_at"] is not None
    assert not harness.tick(sftp_job_recovery_sensor).run_requests
    assert harness.count(project.id) == 0


def test_a_bad_file_is_not_retried(harness: Harness, factory) -> None:
    factory.project(code="badretry")
    harness.upload("inbox/badretry/x.csv", b"name,email\nIvan,ivan@example.com\n")
    result = harness.execute(_request(harness))
    assert not result.success
    job = harness.rows("SELECT status, attempt, next_retry_at FROM sftp_jobs")[0]
    assert (job["status"], job["attempt"], job["next_retry_at"]) == ("failed", 1, None)
    assert not harness.tick(sftp_job_recovery_sensor).run_requests


def test_a_run_left_started_by_a_dead_code_server_is_failed_and_its_job_retried(
    harness: Harness, factory
) -> None:
    """The run stays STARTED for ever (nobody is left to report it) and the job `running`: the
    recovery sensor sees no live process, fails the run so Dagster agrees, and retries."""
    project, job_id, run = _running_job(harness, factory, "stuck", DagsterRunStatus.STARTED)
    retry = _retry(harness)  # one tick: reconcile, then the (zero-delay) retry is due
    assert harness.instance.get_run_by_id(run.run_id).status == DagsterRunStatus.FAILURE
    job = harness.job(job_id)
    assert (job["status"], job["attempt"]) == ("pending", 2)
    assert "no process works on it" in job["error_log"]
    assert harness.execute(retry).success  # type: ignore[arg-type]
    assert harness.job(job_id)["status"] == "completed" and harness.count(project.id) == 50


def test_a_job_whose_process_is_alive_is_left_alone(harness: Harness, factory) -> None:
    """A live process (it holds the run's liveness lock) may still commit: neither the
    recovery sensor nor a failure report for its run touch the job."""
    _, job_id, run = _running_job(harness, factory, "alive", DagsterRunStatus.FAILURE)
    with psycopg.connect(harness.postgres.url(), autocommit=True) as holder:
        job_recovery.hold_run_lock(holder, run.run_id)
        assert not harness.tick(sftp_job_recovery_sensor).run_requests
        assert harness.job(job_id)["status"] == "running"
    # The process is gone now (its connection closed): the next tick ends the attempt.
    assert _retry(harness) is not None
    assert harness.job(job_id)["status"] == "pending"


def test_a_canceled_run_fails_its_job_and_releases_the_file(harness: Harness, factory) -> None:
    """Terminate in the UI (or run monitoring ending a stuck CANCELING run): the job fails with
    that reason and a new import of the file is accepted (no 409)."""
    _, job_id, run = _running_job(harness, factory, "cancel", DagsterRunStatus.CANCELING)
    harness.instance.report_run_canceled(run, "canceled for the test")
    event = next(
        e.dagster_event
        for e in harness.instance.all_logs(run.run_id, of_type=DagsterEventType.RUN_CANCELED)
    )
    with build_run_status_sensor_context(
        sensor_name="sftp_job_canceled_sensor",
        dagster_instance=harness.instance,
        dagster_run=harness.instance.get_run_by_id(run.run_id),
        dagster_event=event,
    ) as ctx:
        sftp_job_canceled_sensor(ctx)
    job = harness.job(job_id)
    assert job["status"] == "failed" and "was canceled" in job["error_log"]
    assert not harness.tick(sftp_job_recovery_sensor).run_requests  # not retried
    assert not harness.scalar(
        "SELECT count(*) FROM sftp_jobs WHERE status IN ('pending', 'running')"
    )


def test_a_commit_reported_failed_afterwards_keeps_the_truth(harness: Harness, factory) -> None:
    """The run worker died right after the commit: Dagster reports FAILURE, the job row says
    completed (what committed) and notes the run status; the run is tagged as committed."""
    project = factory.project(code="late")
    harness.upload("inbox/late/a.csv", csv_bytes([["phone"], *[[p] for p in phones(20)]]))
    result = harness.execute(_request(harness))
    assert result.success
    run = harness.instance.get_run_by_id(result.run_id)
    harness.instance.report_run_failed(run, "run worker exited unexpectedly (-9)")
    event = next(
        e.dagster_event
        for e in harness.instance.all_logs(run.run_id, of_type=DagsterEventType.RUN_FAILURE)
    )
    with build_run_status_sensor_context(
        sensor_name="sftp_job_failure_sensor",
        dagster_instance=harness.instance,
        dagster_run=harness.instance.get_run_by_id(run.run_id),
        dagster_event=event,
    ) as ctx:
        sftp_job_failure_sensor(ctx.for_run_failure())
    [job] = harness.rows("SELECT * FROM sftp_jobs")
    assert (job["status"], job["records_count"]) == ("completed", 20)
    assert job["stats"]["dagster_run_status"] == "FAILURE"
    assert harness.instance.get_run_by_id(run.run_id).tags["numbase/job_outcome"] == "committed"
    assert harness.count(project.id) == 20
