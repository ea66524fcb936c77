"""What the import and export assets share: the retry policy and job-row bookkeeping."""

from __future__ import annotations

from dagster import Backoff, Failure, Jitter, RetryPolicy

from models import sftp_jobs
from orchestration.resources import PostgresResource

# SFTP network errors only (other failures raise Failure(allow_retries=False)):
# waits of about 1, 3 and 7 seconds.
SFTP_RETRY = RetryPolicy(
    max_retries=3, delay=1.0, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS
)


def fail_job(postgres: PostgresResource, job_id: int, message: str, run_id: str) -> None:
    """Best effort: when the database itself is down, the run-failure sensor does it later."""
    try:
        with postgres.connect("numbase-job-status", autocommit=True) as conn:
            sftp_jobs.fail(conn, job_id, message, run_id=run_id)
    except Exception:  # noqa: BLE001 - never mask the original error
        pass


def final_failure(message: str, job_id: int, **metadata: object) -> Failure:
    return Failure(
        description=message,
        metadata={"job_id": job_id, "reason": message, **metadata},
        allow_retries=False,
    )
