"""An import waiting for its automatic retry, as the API shows it: `pending` with the attempt,
the time of the retry and why; a re-import of the same file meanwhile is 409."""

from __future__ import annotations

import datetime as dt

import psycopg

from models import job_recovery
from tests.api.test_sftp_api import add_job


def test_a_scheduled_retry_is_visible_and_blocks_a_second_import(
    client, db, factory, manager, database_url: str
) -> None:
    project = factory.project(code="acme", members=[manager.user])
    job_id = add_job(
        db,
        project_id=project.id,
        status="running",
        file_path="inbox/acme/may.csv",
        dagster_run_id="run-1",
    )
    with psycopg.connect(database_url, autocommit=True) as conn:
        outcome = job_recovery.end_attempt(
            conn,
            job_id,
            "import rolled back: OperationalError('server closed the connection')",
            run_id="run-1",
            transient=True,
            policy=job_recovery.RetryPolicy(max_attempts=3, base_delay_seconds=60),
        )
    assert outcome is not None and outcome.retrying
    out = client.get(f"/api/sftp/jobs/{job_id}/", headers=manager.headers).json()
    assert (out["status"], out["attempt"]) == ("pending", 2)
    retry_at = dt.datetime.fromisoformat(out["next_retry_at"])
    assert 50 < (retry_at - dt.datetime.now(dt.UTC)).total_seconds() <= 61
    assert out["error_log"].startswith("attempt 1 of 3 failed: import rolled back")
    again = client.post(
        "/api/sftp/import/",
        json={"project_id": project.id, "file_path": "inbox/acme/may.csv"},
        headers=manager.headers,
    )
    assert again.status_code == 409 and f"Job {job_id}" in again.text
