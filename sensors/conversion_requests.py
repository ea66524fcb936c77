"""Durable "recalculate conversion" requests -> Dagster runs, and their status write-back.

The API inserts a `conversion_requests` row (status pending; project_id NULL = every project) and
answers 202. The sensor turns each pending row into one run (run key
`conversion_request:<id>`, so a row is never run twice) of the one refresh job: every run
rebuilds every mart, a project's request only limits the new snapshot to that project. The run
itself marks the row running, then completed or failed with the error, and records its Dagster
run id and times. A run that dies before its op starts is marked failed by the failure sensor.
If Dagster is down, rows wait.

Targets are named by job name (orchestration/ builds the jobs), so this module imports no
orchestration code.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
from dagster import (
    DefaultSensorStatus,
    JobDefinition,
    RunFailureSensorContext,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    run_failure_sensor,
    sensor,
)
from dagster._core.definitions.unresolved_asset_job_definition import (
    UnresolvedAssetJobDefinition,
)

from models.db import connect, db_timeouts
from sensors.run_status import failure_message

# What orchestration/ passes in: define_asset_job(...) results or plain jobs.
Job = JobDefinition | UnresolvedAssetJobDefinition


RUN_KEY_PREFIX = "conversion_request"
REQUEST_TAG = "numbase/conversion_request_id"
BATCH = 50


class ConversionRequestError(ValueError):
    """The request cannot be served (its project is missing or deleted)."""


def _connect(url: str) -> psycopg.Connection:
    # The lock timeout: a blocked status update fails this tick (retried on the next) instead
    # of stalling the daemon's sensor loop.
    return connect(
        url, application_name="numbase-conversion", timeouts=db_timeouts(), autocommit=True
    )


def pending_requests(
    url: str, after_id: int = 0, limit: int = BATCH
) -> list[tuple[int, int | None]]:
    """(id, project_id) of pending requests after `after_id`, oldest first."""
    with _connect(url) as conn:
        rows = conn.execute(
            "SELECT id, project_id FROM conversion_requests"
            " WHERE status = 'pending' AND id > %s ORDER BY id LIMIT %s",
            (after_id, limit),
        ).fetchall()
    return [(int(r[0]), r[1]) for r in rows]


def mark_running(url: str, request_id: int, run_id: str) -> None:
    with _connect(url) as conn:
        conn.execute(
            "UPDATE conversion_requests SET status = 'running', dagster_run_id = %s,"
            " started_at = clock_timestamp(), completed_at = NULL, error_log = NULL WHERE id = %s",
            (run_id, request_id),
        )


def mark_finished(
    url: str, request_id: int, *, error: str | None = None, run_id: str | None = None
) -> None:
    """completed (error None) or failed with the error; never overwrites a finished row."""
    with _connect(url) as conn:
        conn.execute(
            "UPDATE conversion_requests SET status = %s, error_log = %s,"
            " completed_at = clock_timestamp(),"
            " dagster_run_id = coalesce(dagster_run_id, %s)"
            " WHERE id = %s AND status IN ('pending', 'running')",
            ("failed" if error else "completed", error, run_id, request_id),
        )


def check_project(url: str, project_id: int) -> None:
    with _connect(url) as conn:
        row = conn.execute(
            "SELECT is_deleted FROM projects WHERE id = %s", (project_id,)
        ).fetchone()
    if row is None:
        raise ConversionRequestError(f"project {project_id} does not exist")
    if row[0]:
        raise ConversionRequestError(f"project {project_id} is deleted")


def run_request_for(
    request_id: int, project_id: int | None, *, job_name: str, op_name: str
) -> RunRequest:
    config: dict[str, Any] = {"conversion_request_id": request_id}
    if project_id is not None:
        config["project_id"] = project_id
    return RunRequest(
        run_key=f"{RUN_KEY_PREFIX}:{request_id}",
        job_name=job_name,
        run_config={"ops": {op_name: {"config": config}}},
        tags={REQUEST_TAG: str(request_id), "numbase/project_id": str(project_id or "all")},
    )


def build_conversion_request_sensor(
    *, job: Job, op_name: str, minimum_interval_seconds: int = 10
) -> SensorDefinition:
    """Pending rows -> runs of `job` (a full refresh; a project's request with its project_id).

    The cursor is the highest request id already turned into a run request; the run key makes a
    repeated request for the same row a no-op anyway.
    """

    @sensor(
        name="conversion_request_sensor",
        job=job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description="Turns pending conversion_requests rows into dbt runs.",
        required_resource_keys={"postgres"},
    )
    def conversion_request_sensor(context: SensorEvaluationContext) -> Iterator[Any]:
        after = int(context.cursor or 0)
        url = context.resources.postgres.url()
        rows = pending_requests(url, after)
        if not rows:
            yield SkipReason(f"no pending conversion request after id {after}")
            return
        for request_id, project_id in rows:
            yield run_request_for(request_id, project_id, job_name=job.name, op_name=op_name)
        context.update_cursor(str(rows[-1][0]))

    return conversion_request_sensor


def build_conversion_request_failure_sensor(monitored_jobs: list[Job]) -> SensorDefinition:
    """Marks a request failed when its run fails before (or without) its op recording it."""

    @run_failure_sensor(
        name="conversion_request_failure_sensor",
        monitored_jobs=monitored_jobs,
        default_status=DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=10,
        description="Marks the conversion_requests row of a failed run as failed, with the error.",
    )
    def conversion_request_failure_sensor(context: RunFailureSensorContext) -> None:
        run = context.dagster_run
        raw = run.tags.get(REQUEST_TAG, "")
        if not raw.isdigit():
            return
        # Run-status sensors take resources only by type: reach PostgreSQL via the settings.
        mark_finished(_database_url(), int(raw), error=failure_message(context), run_id=run.run_id)

    return conversion_request_failure_sensor


def _database_url() -> str:
    from models.db import resolve_database_url
    from models.settings import load_settings

    return resolve_database_url(load_settings())
