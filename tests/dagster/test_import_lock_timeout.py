"""A real Dagster import run against a lock held on phone_numbers: it fails within the lock
timeout (NUMBASE_DB_LOCK_TIMEOUT_SECONDS, read by PostgresResource.connect) with a reason that
names the wait, stores nothing and leaves the file in the inbox - instead of waiting as long as
the lock is held."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from sensors.inbox import sftp_inbox_sensor
from tests.dagster.conftest import Harness, csv_bytes, phones

RELEASE_AFTER = 40.0  # without a lock timeout the run would wait this long


def _request(h: Harness):  # noqa: ANN202
    for _ in range(3):
        out = h.tick(sftp_inbox_sensor)
        if out.run_requests:
            return out.run_requests[0]
    raise AssertionError("the inbox sensor asked for no run")


def test_a_held_lock_fails_the_import_within_the_timeout(
    harness: Harness, factory, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NUMBASE_DB_LOCK_TIMEOUT_SECONDS", "1")
    project = factory.project(code="held")
    harness.upload("inbox/held/list.csv", csv_bytes([["phone"], *[[p] for p in phones(500)]]))
    request = _request(harness)
    job_id = int(request.tags["numbase/sftp_job_id"])
    with psycopg.connect(database_url, application_name="test-blocker") as blocker:
        # What a maintenance job or a long bulk transaction does: writers of the table wait.
        blocker.execute("LOCK TABLE phone_numbers IN SHARE MODE")
        timer = threading.Timer(RELEASE_AFTER, blocker.rollback)
        timer.start()
        started = time.monotonic()
        result = harness.execute(request)
        elapsed = time.monotonic() - started
        timer.cancel()
        blocker.rollback()
    assert not result.success
    assert elapsed < RELEASE_AFTER / 2, elapsed  # the timeout ended the wait, not the release
    job = harness.job(job_id)
    # A lock timeout is transient: the attempt ended and a retry is scheduled (models/job_recovery)
    assert (job["status"], job["attempt"]) == ("pending", 2), job
    assert job["next_retry_at"] is not None
    assert "inbox/held/list.csv" in job["error_log"]
    assert "timed out waiting for a lock on phone_numbers" in job["error_log"]
    assert "nothing was imported" in job["error_log"]
    assert harness.count(project.id) == 0
    assert harness.exists("inbox/held/list.csv")  # the file stays for another attempt
