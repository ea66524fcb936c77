"""A run that dies (crash, retries exhausted, killed) marks its sftp_jobs row failed.

The assets already fail their job row when they can; this sensor is the backstop for failures
they cannot see (a lost process, a database outage at the time). It reaches PostgreSQL through
the shared settings (run-status sensors take resources only by type, and sensors/ must not
import orchestration/).
"""

from __future__ import annotations

from collections.abc import Mapping

from dagster import DefaultSensorStatus, RunFailureSensorContext, run_failure_sensor

from models import sftp_jobs
from models.db import connect, db_timeouts


def failure_message(context: RunFailureSensorContext) -> str:
    parts = [context.failure_event.message or "run failed"]
    for event in context.get_step_failure_events():
        data = event.step_failure_data
        if data is not None and data.error is not None:
            parts.append(f"{event.step_key}: {data.error.message.strip()}")
    return "\n".join(parts)


def fail_job_for_run(database_url: str, tags: Mapping[str, str], run_id: str, message: str) -> bool:
    raw = tags.get(sftp_jobs.JOB_TAG)
    if not raw or not raw.isdigit():
        return False
    # The lock timeout: a blocked update fails this tick (retried) instead of every sensor.
    timeouts = db_timeouts()
    with connect(database_url, application_name="numbase-run-status", timeouts=timeouts,
                 autocommit=True) as c:  # fmt: skip
        return sftp_jobs.fail(c, int(raw), message, run_id=run_id)


def _database_url() -> str:
    from models.db import resolve_database_url
    from models.settings import load_settings

    return resolve_database_url(load_settings())


@run_failure_sensor(
    name="sftp_job_failure_sensor",
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=10,
    description="Marks the sftp_jobs row of a failed run as failed, with the error.",
)
def sftp_job_failure_sensor(context: RunFailureSensorContext) -> None:
    run = context.dagster_run
    if sftp_jobs.JOB_TAG not in run.tags:
        return
    if fail_job_for_run(_database_url(), run.tags, run.run_id, failure_message(context)):
        context.log.info(f"sftp job {run.tags[sftp_jobs.JOB_TAG]} marked failed (run {run.run_id})")
