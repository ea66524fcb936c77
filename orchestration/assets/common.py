"""What the import and export assets share: the retry policy and job-row bookkeeping."""

from __future__ import annotations

import psycopg
from dagster import Backoff, Failure, Jitter, RetryPolicy

from models import job_recovery
from orchestration.resources import PostgresResource, SFTPUnavailable

# SFTP network errors only (other failures raise Failure(allow_retries=False)):
# waits of about 1, 3 and 7 seconds.
SFTP_RETRY = RetryPolicy(
    max_retries=3, delay=1.0, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS
)


def is_transient(exc: BaseException) -> bool:
    """Worth another attempt later: the database or the SFTP server went away (restart, lost
    connection, lock/statement timeout, deadlock), not a property of the file or the request."""
    # psycopg's OperationalError covers AdminShutdown, a lost connection, LockNotAvailable,
    # QueryCanceled (statement_timeout) and TransactionRollback (deadlock, serialization).
    return isinstance(exc, (SFTPUnavailable, psycopg.OperationalError))


def retry_policy(job_type: str = "import") -> job_recovery.RetryPolicy:
    from models.settings import load_settings

    return job_recovery.policy_for(job_type, load_settings())


def fail_job(
    postgres: PostgresResource,
    job_id: int,
    message: str,
    run_id: str,
    *,
    transient: bool = False,
    attempt: int | None = None,
) -> None:
    """End this run's attempt (a retry if transient and attempts are left, else `failed`).
    Best effort: when the database itself is down, the run-failure sensor does it later."""
    try:
        with postgres.connect("numbase-job-status", autocommit=True) as conn:
            job_recovery.end_attempt(
                conn, job_id, message, run_id=run_id, transient=transient,
                policy=retry_policy(), attempt=attempt,
            )  # fmt: skip
    except Exception:  # noqa: BLE001 - never mask the original error
        pass


def final_failure(
    message: str, job_id: int, *, transient: bool = False, **metadata: object
) -> Failure:
    """The step's failure (never retried inside the run); `transient` tells the run-failure
    sensor, should the asset not have recorded it, whether a later attempt may succeed."""
    return Failure(
        description=message,
        metadata={"job_id": job_id, "reason": message, "transient": transient, **metadata},
        allow_retries=False,
    )
