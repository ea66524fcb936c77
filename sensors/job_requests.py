"""Durable job requests: pending `sftp_jobs` rows become runs with run_key `sftp_job:<id>`.

The requester (the API) only INSERTs a row: job_type 'import' with file_path (relative to the
SFTP root), project_id, optional provider_id and params {"column_map": {...}}; or job_type
'export' with project_id and params {"filters": {...numbers-list filters...}, "name": "..."}.
If Dagster is down the row waits; run keys make a second tick harmless. A request that cannot
run (unknown project, a path outside the SFTP root, bad filters) is failed here with the reason.
"""

from __future__ import annotations

import posixpath
from typing import Any

from dagster import (
    AddDynamicPartitionsRequest,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from models import sftp_access, sftp_jobs
from models.number_filters import FilterError, NumberFilters
from sensors.inbox import import_run_config

EXPORT_OP = "numbers_export"


class RequestError(ValueError):
    pass


def clean_sftp_path(path: str | None) -> str:
    """A path relative to the SFTP root, without '..' tricks."""
    if not path or not path.strip():
        raise RequestError("file_path is required for an import")
    if ".." in path.replace("\\", "/").split("/"):
        raise RequestError(f"file_path {path!r} is outside the SFTP root")
    norm = posixpath.normpath("/" + path.strip()).lstrip("/")
    if not norm:
        raise RequestError(f"file_path {path!r} names no file")
    if any(c in norm for c in "\n\r\t\0") or "..." in norm:
        raise RequestError(f"file_path {path!r} contains characters a file key cannot hold")
    return norm


def export_run_config(job_id: int) -> dict[str, Any]:
    return {"ops": {EXPORT_OP: {"config": {"job_id": job_id}}}}


def _check_import(conn: Any, job: sftp_jobs.JobRow) -> str:
    if job.project_id is None or sftp_access.live_project(conn, id=job.project_id) is None:
        raise RequestError(f"project {job.project_id} does not exist or is deleted")
    refusal = sftp_access.import_refusal(conn, job.project_id, job.provider_id)
    if refusal is not None:  # the rule the API and the inbox apply too
        raise RequestError(refusal)
    column_map = job.params.get("column_map")
    if column_map is not None and not isinstance(column_map, dict):
        raise RequestError("params.column_map must be an object like {'phone': 'Телефон'}")
    return clean_sftp_path(job.file_path)


def _check_export(conn: Any, job: sftp_jobs.JobRow) -> None:
    if job.project_id is None or sftp_access.live_project(conn, id=job.project_id) is None:
        raise RequestError(f"project {job.project_id} does not exist or is deleted")
    try:
        NumberFilters.from_params(job.params.get("filters") or {})
    except FilterError as exc:
        raise RequestError(f"params.filters: {exc}") from None


@sensor(
    name="sftp_import_requests_sensor",
    job_name=sftp_jobs.IMPORT_JOB,
    minimum_interval_seconds=5,
    required_resource_keys={"postgres"},
    default_status=DefaultSensorStatus.RUNNING,
    description="Turns pending sftp_jobs import requests into runs (run_key sftp_job:<id>).",
)
def sftp_import_requests_sensor(context: SensorEvaluationContext) -> SensorResult:
    requests: list[RunRequest] = []
    partitions: list[str] = []
    with context.resources.postgres.connect("numbase-job-sensor", autocommit=True) as conn:
        for job in sftp_jobs.pending_jobs(conn, "import"):
            try:
                path = _check_import(conn, job)
            except RequestError as exc:
                sftp_jobs.fail(conn, job.id, str(exc))
                context.log.warning(f"sftp job {job.id} refused: {exc}")
                continue
            if path != job.file_path:
                sftp_jobs.set_path(conn, job.id, path)
            partitions.append(path)
            requests.append(
                RunRequest(
                    run_key=f"sftp_job:{job.id}",
                    partition_key=path,
                    run_config=import_run_config(job.id),
                    tags={sftp_jobs.JOB_TAG: str(job.id)},
                )
            )
    return SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=(
            [AddDynamicPartitionsRequest(sftp_jobs.INBOX_PARTITIONS, sorted(set(partitions)))]
            if partitions
            else []
        ),
    )


@sensor(
    name="sftp_export_requests_sensor",
    job_name=sftp_jobs.EXPORT_JOB,
    minimum_interval_seconds=5,
    required_resource_keys={"postgres"},
    default_status=DefaultSensorStatus.RUNNING,
    description="Turns pending sftp_jobs export requests into runs (run_key sftp_job:<id>).",
)
def sftp_export_requests_sensor(context: SensorEvaluationContext) -> SensorResult:
    requests: list[RunRequest] = []
    with context.resources.postgres.connect("numbase-job-sensor", autocommit=True) as conn:
        for job in sftp_jobs.pending_jobs(conn, "export"):
            try:
                _check_export(conn, job)
            except RequestError as exc:
                sftp_jobs.fail(conn, job.id, str(exc))
                context.log.warning(f"sftp job {job.id} refused: {exc}")
                continue
            requests.append(
                RunRequest(
                    run_key=f"sftp_job:{job.id}",
                    run_config=export_run_config(job.id),
                    tags={sftp_jobs.JOB_TAG: str(job.id)},
                )
            )
    return SensorResult(run_requests=requests)
