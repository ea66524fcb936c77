"""Reconcile sftp_jobs with their Dagster runs, and launch the automatic retries.

Every tick:
1. each `running` job whose run has no live process (nobody holds the run's liveness lock,
   models/job_recovery.py) gets its attempt ended - whatever the run status says. That catches
   what no run-status event reports: a code server killed with its run worker leaves the run
   STARTED for ever (DefaultRunLauncher cannot check a worker's health), and a sensor tick lost
   in a crash. A run still STARTED/STARTING is then reported failed, so Dagster agrees;
2. each `pending` import whose retry is due becomes a run (run key
   `sftp_job:<id>:attempt:<n>`, tags job id + attempt), so a retry runs once per attempt.
"""

from __future__ import annotations

from typing import Any

import psycopg
from dagster import (
    AddDynamicPartitionsRequest,
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)
from dagster._core.events import DagsterEventType

from models import job_recovery, sftp_jobs
from sensors.inbox import import_run_config
from sensors.run_status import failure_is_transient

IN_PROGRESS = {
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
}


def _policy(job_type: str) -> job_recovery.RetryPolicy:
    from models.settings import load_settings

    return job_recovery.policy_for(job_type, load_settings())


def reconcile_running(conn: Any, instance: DagsterInstance, log: Any) -> list[int]:
    """End the attempts of running jobs without a live process; returns their ids."""
    ended: list[int] = []
    for job in job_recovery.running_jobs(conn):
        if job.run_id and job_recovery.run_alive(conn, job.run_id):
            continue
        run = instance.get_run_by_id(job.run_id) if job.run_id else None
        status = run.status if run is not None else None
        canceled = status in (DagsterRunStatus.CANCELED, DagsterRunStatus.CANCELING)
        if run is None:
            reason = f"run {job.run_id} no longer exists in Dagster"
        elif status in IN_PROGRESS and not canceled:
            reason = (
                f"run {job.run_id} is {status.value} but no process works on it any more "
                "(its run worker or code server died)"
            )
        else:
            reason = f"run {job.run_id} ended {status.value} without finishing the job"
        transient = not canceled
        if status == DagsterRunStatus.FAILURE:  # classify as the failure sensor would
            failures = instance.all_logs(run.run_id, of_type=DagsterEventType.STEP_FAILURE)
            transient = failure_is_transient([e.dagster_event for e in failures if e.dagster_event])
        try:
            outcome = job_recovery.end_attempt(
                conn,
                job.id,
                reason,
                run_id=job.run_id,
                transient=transient,
                policy=_policy(job.job_type),
            )
        except psycopg.errors.LockNotAvailable:
            log.info(f"sftp job {job.id}: its row is locked by a load; next tick")
            continue
        if outcome is None:
            continue  # finished or claimed by another run meanwhile
        ended.append(job.id)
        log.warning(f"sftp job {job.id}: {reason}; now {outcome.status}")
        if run is not None and status in IN_PROGRESS:
            # A dead run left STARTED/CANCELING would look alive in the UI for ever.
            if canceled:
                instance.report_run_canceled(run, reason)
            else:
                instance.report_run_failed(run, reason)
    return ended


def retry_requests(conn: Any) -> tuple[list[RunRequest], list[str]]:
    requests: list[RunRequest] = []
    partitions: list[str] = []
    for job in job_recovery.due_retries(conn, "import"):
        if not job.file_path:
            continue
        partitions.append(job.file_path)
        requests.append(
            RunRequest(
                run_key=job_recovery.retry_run_key(job.id, job.attempt),
                partition_key=job.file_path,
                run_config=import_run_config(job.id),
                tags={sftp_jobs.JOB_TAG: str(job.id), job_recovery.ATTEMPT_TAG: str(job.attempt)},
            )
        )
    return requests, partitions


@sensor(
    name="sftp_job_recovery_sensor",
    job_name=sftp_jobs.IMPORT_JOB,
    minimum_interval_seconds=15,
    required_resource_keys={"postgres"},
    default_status=DefaultSensorStatus.RUNNING,
    description="Ends the attempts of sftp jobs whose run died without a trace and launches "
    "the automatic retries of imports that failed for a transient reason.",
)
def sftp_job_recovery_sensor(context: SensorEvaluationContext) -> SensorResult:
    with context.resources.postgres.connect("numbase-job-recovery", autocommit=True) as conn:
        reconcile_running(conn, context.instance, context.log)
        requests, partitions = retry_requests(conn)
    for request in requests:
        context.log.info(f"retrying: {request.run_key}")
    return SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=(
            [AddDynamicPartitionsRequest(sftp_jobs.INBOX_PARTITIONS, sorted(set(partitions)))]
            if partitions
            else []
        ),
    )
