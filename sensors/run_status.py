"""A run that fails or is canceled ends its sftp_jobs attempt: a retry or `failed`, never stuck.

The assets already end their attempt when they can; these sensors are the backstop for what
they cannot see (a lost process, a database outage at the time, a run terminated from the UI).
The rules (ownership, liveness, retry) are models/job_recovery.py's. A failure is transient -
retried automatically - unless a step failed for a reason that says otherwise (a bad file, a
refused request: the asset's Failure carries `transient: false`); a run that failed without a
step failure (its worker crashed, it timed out starting, its launch failed) is transient. A
canceled run is a person's (or run monitoring's) decision: the job fails with that reason and is
not retried. They reach PostgreSQL through the shared settings (run-status sensors take
resources only by type, and sensors/ must not import orchestration/).
"""

from __future__ import annotations

from collections.abc import Sequence

from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    RunFailureSensorContext,
    RunStatusSensorContext,
    run_failure_sensor,
    run_status_sensor,
)
from dagster._core.events import DagsterEvent, DagsterEventType

from models import job_recovery, sftp_jobs
from models.db import connect, db_timeouts

OUTCOME_TAG = "numbase/job_outcome"
# Exceptions (by class name, as Dagster records them) that a later attempt may not meet again.
TRANSIENT_ERRORS = frozenset(
    {
        "SFTPUnavailable",
        "OperationalError",
        "AdminShutdown",
        "CannotConnectNow",
        "ConnectionTimeout",
        "LockNotAvailable",
        "QueryCanceled",
        "DeadlockDetected",
        "SerializationFailure",
        "DagsterUserCodeUnreachableError",
    }
)


def failure_message(context: RunFailureSensorContext) -> str:
    parts = [context.failure_event.message or "run failed"]
    steps = context.get_step_failure_events()
    for event in steps:
        data = event.step_failure_data
        if data is not None and data.error is not None:
            parts.append(f"{event.step_key}: {data.error.message.strip()}")
    if not steps:
        # No step failed: the why is the last engine event, e.g. "Run execution process for
        # ... unexpectedly exited with exit code -9" from the code server.
        engine = context.instance.all_logs(
            context.dagster_run.run_id, of_type=DagsterEventType.ENGINE_EVENT
        )
        if engine and engine[-1].message:
            parts.append(engine[-1].message.strip())
    return "\n".join(parts)


def failure_is_transient(step_failures: Sequence[DagsterEvent]) -> bool:
    """No step failed (the process or the launch did), or every step failure says transient."""
    for event in step_failures:
        data = event.step_failure_data
        if data is None:
            continue
        if data.user_failure_data is not None:
            flag = data.user_failure_data.metadata.get("transient")
            if not (flag is not None and getattr(flag, "value", flag) is True):
                return False
        elif data.error is None or data.error.cls_name not in TRANSIENT_ERRORS:
            return False
    return True


def _policy(job_type: str) -> job_recovery.RetryPolicy:
    from models.settings import load_settings

    return job_recovery.policy_for(job_type, load_settings())


def _database_url() -> str:
    from models.db import resolve_database_url
    from models.settings import load_settings

    return resolve_database_url(load_settings())


def end_attempt_for_run(
    database_url: str,
    run: object,
    message: str,
    *,
    transient: bool,
    run_status: str,
    instance: object | None = None,
) -> str:
    """End the attempt of the job the run worked for; returns what happened, for the log."""
    tags = run.tags  # type: ignore[attr-defined]
    run_id = run.run_id  # type: ignore[attr-defined]
    raw = tags.get(sftp_jobs.JOB_TAG, "")
    if not raw.isdigit():
        return "no sftp job"
    job_id = int(raw)
    attempt_raw = tags.get(job_recovery.ATTEMPT_TAG, "1")
    attempt = int(attempt_raw) if attempt_raw.isdigit() else 1
    job_type = "export" if run.job_name == sftp_jobs.EXPORT_JOB else "import"  # type: ignore[attr-defined]
    # The lock timeout: a blocked update fails this tick (retried) instead of every sensor.
    with connect(database_url, application_name="numbase-run-status", timeouts=db_timeouts(),
                 autocommit=True) as c:  # fmt: skip
        if job_recovery.run_alive(c, run_id):
            # A process of this run still works on the job (a step outliving its run worker):
            # what it commits is the truth; the reconcile sensor acts once it is gone.
            return f"job {job_id}: a process of run {run_id} is still alive; left to it"
        outcome = job_recovery.end_attempt(
            c,
            job_id,
            message,
            run_id=run_id,
            attempt=attempt,
            transient=transient,
            policy=_policy(job_type),
        )
        if outcome is None:
            if job_recovery.note_outcome_mismatch(c, job_id, run_id, run_status) and instance:
                instance.add_run_tags(run_id, {OUTCOME_TAG: "committed"})  # type: ignore[attr-defined]
                return f"job {job_id} committed before run {run_id} was reported {run_status}"
            return f"job {job_id}: attempt {attempt} already ended"
    if outcome.retrying:
        return f"job {job_id}: attempt {outcome.attempt} failed; retry at {outcome.next_retry_at}"
    return f"job {job_id} marked failed (run {run_id})"


@run_failure_sensor(
    name="sftp_job_failure_sensor",
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=10,
    description="Ends the sftp_jobs attempt of a failed run: a retry (transient) or failed.",
)
def sftp_job_failure_sensor(context: RunFailureSensorContext) -> None:
    run = context.dagster_run
    if sftp_jobs.JOB_TAG not in run.tags:
        return
    transient = failure_is_transient(context.get_step_failure_events())
    done = end_attempt_for_run(
        _database_url(),
        run,
        failure_message(context),
        transient=transient,
        run_status="FAILURE",
        instance=context.instance,
    )
    context.log.info(done)


@run_status_sensor(
    run_status=DagsterRunStatus.CANCELED,
    name="sftp_job_canceled_sensor",
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=10,
    description="Fails the sftp_jobs row of a canceled run (terminated from the UI or by run "
    "monitoring), so a new request is accepted.",
)
def sftp_job_canceled_sensor(context: RunStatusSensorContext) -> None:
    run = context.dagster_run
    if sftp_jobs.JOB_TAG not in run.tags:
        return
    message = (
        f"run {run.run_id} was canceled (terminated from the Dagster UI, or stuck while "
        "canceling and ended by run monitoring); request the import again to retry"
    )
    done = end_attempt_for_run(
        _database_url(),
        run,
        message,
        transient=False,
        run_status="CANCELED",
        instance=context.instance,
    )
    context.log.info(done)
