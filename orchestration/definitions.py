"""The one Dagster code location of numbase (workspace.yaml points here)."""

from __future__ import annotations

from typing import Any

from dagster import Definitions

from orchestration.assets.dbt import conversion_definitions
from orchestration.assets.dialing import (
    registry_backfill_sensor,
    timezone_backfill,
    timezone_backfill_job,
)
from orchestration.assets.dnc import dnc_import_job, dnc_list_file
from orchestration.assets.exports import numbers_export
from orchestration.assets.imports import phone_numbers
from orchestration.assets.registry import numbering_plan_registry, registry_load_job
from orchestration.jobs import sftp_export_job, sftp_import_job
from orchestration.maintenance import auth_housekeeping_job, auth_housekeeping_schedule
from orchestration.resources import default_resources
from sensors.dnc_inbox import dnc_inbox_sensor
from sensors.inbox import sftp_inbox_sensor
from sensors.job_requests import sftp_export_requests_sensor, sftp_import_requests_sensor
from sensors.reconcile import sftp_job_recovery_sensor
from sensors.registry_inbox import registry_inbox_sensor
from sensors.run_status import sftp_job_canceled_sensor, sftp_job_failure_sensor


def build_definitions(resources: dict[str, Any] | None = None) -> Definitions:
    """Definitions with the given resources (tests), else the ones from NUMBASE_* variables."""
    sftp = Definitions(
        assets=[
            phone_numbers,
            numbers_export,
            timezone_backfill,
            dnc_list_file,
            numbering_plan_registry,
        ],
        jobs=[
            sftp_import_job,
            sftp_export_job,
            auth_housekeeping_job,
            timezone_backfill_job,
            dnc_import_job,
            registry_load_job,
        ],
        schedules=[auth_housekeeping_schedule],
        sensors=[
            sftp_inbox_sensor,
            sftp_import_requests_sensor,
            sftp_export_requests_sensor,
            sftp_job_failure_sensor,
            sftp_job_canceled_sensor,
            sftp_job_recovery_sensor,
            registry_backfill_sensor,
            dnc_inbox_sensor,
            registry_inbox_sensor,
        ],
        resources=resources if resources is not None else default_resources(),
    )
    # Conversion: dbt models as assets, their jobs, schedule and sensors (+ the dbt resource).
    return Definitions.merge(sftp, conversion_definitions())


defs = build_definitions()
