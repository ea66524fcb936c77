"""The sensors' own connections carry the lock timeout: a status update blocked by another
transaction fails the tick within NUMBASE_DB_LOCK_TIMEOUT_SECONDS (Dagster retries it on the
next tick) instead of stalling the daemon's sensor loop for as long as the lock is held."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import psycopg
import pytest
from sqlalchemy import Engine, text

from models.settings import get_settings
from sensors import conversion_requests, run_status

RELEASE_AFTER = 20.0  # the blocker's lock lasts this long without a timeout


@pytest.fixture
def short_lock_timeout(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("NUMBASE_DB_LOCK_TIMEOUT_SECONDS", "1")
    get_settings.cache_clear()  # the sensors read the cached process settings
    yield
    get_settings.cache_clear()


def _blocked(database_url: str, lock: str, call: Callable[[], object]) -> float:
    """Run `call` while another session holds `lock`; -> seconds until it raised."""
    with psycopg.connect(database_url, application_name="test-blocker") as blocker:
        blocker.execute(lock)
        timer = threading.Timer(RELEASE_AFTER, blocker.rollback)
        timer.start()
        started = time.monotonic()
        try:
            with pytest.raises(psycopg.errors.LockNotAvailable, match="lock timeout"):
                call()
        finally:
            timer.cancel()
        return time.monotonic() - started


def test_conversion_request_write_back_times_out(
    db: Engine, database_url: str, factory, short_lock_timeout: None
) -> None:
    project = factory.project()
    with db.begin() as conn:
        request_id = conn.scalar(
            text("INSERT INTO conversion_requests (project_id) VALUES (:p) RETURNING id"),
            {"p": project.id},
        )
    elapsed = _blocked(
        database_url,
        f"SELECT 1 FROM conversion_requests WHERE id = {request_id} FOR UPDATE",
        lambda: conversion_requests.mark_finished(database_url, request_id, error="boom"),
    )
    assert elapsed < RELEASE_AFTER / 2, elapsed


def test_run_failure_sensor_write_back_times_out(
    db: Engine, database_url: str, factory, short_lock_timeout: None
) -> None:
    project = factory.project()
    with db.begin() as conn:
        job_id = conn.scalar(
            text(
                "INSERT INTO sftp_jobs (job_type, status, project_id)"
                " VALUES ('import', 'running', :p) RETURNING id"
            ),
            {"p": project.id},
        )
    elapsed = _blocked(
        database_url,
        f"SELECT 1 FROM sftp_jobs WHERE id = {job_id} FOR UPDATE",
        lambda: run_status.end_attempt_for_run(
            database_url,
            SimpleNamespace(
                tags={"numbase/sftp_job_id": str(job_id)},
                run_id="run-1",
                job_name="sftp_import_job",
            ),
            "crashed",
            transient=False,
            run_status="FAILURE",
        ),
    )
    assert elapsed < RELEASE_AFTER / 2, elapsed
