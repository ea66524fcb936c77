"""Jobs the sensors target by name (sensors/ never imports this module)."""

from __future__ import annotations

from dagster import define_asset_job, in_process_executor

from models import sftp_jobs
from orchestration.assets.exports import numbers_export
from orchestration.assets.imports import phone_numbers

sftp_import_job = define_asset_job(
    sftp_jobs.IMPORT_JOB,
    selection=[phone_numbers],
    description="Import one SFTP file (a partition of phone_numbers).",
    tags={"numbase/kind": "sftp_import"},
    # One step: a step process of its own would only add start-up time, and could outlive a
    # killed run worker and commit while Dagster reports the run failed (issue 12, item 7).
    executor_def=in_process_executor,
)
sftp_export_job = define_asset_job(
    sftp_jobs.EXPORT_JOB,
    selection=[numbers_export],
    description="Export a project's numbers to the SFTP outbox.",
    tags={"numbase/kind": "sftp_export"},
    executor_def=in_process_executor,
)
