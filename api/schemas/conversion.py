"""Response bodies of the conversion endpoints (metrics defined in dbt_project/, read here)."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.sftp import JobStatus

__all__ = ["JobStatus"]


class Metrics(BaseModel):
    """The conversion metrics (definitions: dbt_project/macros/conversion_metrics.sql)."""

    model_config = ConfigDict(from_attributes=True)

    total_numbers: int
    processed_numbers: int = Field(description="status is not 'new'")
    in_progress_numbers: int
    success_numbers: int
    failed_numbers: int
    no_answer_numbers: int
    conversion_rate: float = Field(
        description="success / finished * 100, finished = success + failed + no_answer"
        " (in_progress is not counted; 0 if none finished)"
    )
    call_attempts: int
    last_call_at: dt.datetime | None
    calculated_at: dt.datetime = Field(description="the dbt run that computed the row")


class ConversionSnapshot(Metrics):
    """One row of `project_conversions` (one per project per dbt run)."""

    id: int
    project_id: int


class NullableMetrics(BaseModel):
    total_numbers: int | None
    processed_numbers: int | None
    in_progress_numbers: int | None
    success_numbers: int | None
    failed_numbers: int | None
    no_answer_numbers: int | None
    conversion_rate: float | None
    call_attempts: int | None
    last_call_at: dt.datetime | None
    calculated_at: dt.datetime | None


class ConversionCurrent(NullableMetrics):
    """The latest snapshot; never computed yet: every metric and `calculated_at` are null."""

    project_id: int
    snapshot_id: int | None
    computed: bool = Field(description="false until the first refresh has run for the project")


class ConversionRequestOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    project_id: int | None = Field(description="null: every project")
    status: JobStatus
    error_log: str | None
    dagster_run_id: str | None
    requested_by: int | None
    started_at: dt.datetime | None
    completed_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime
    url: str = Field(description="where to poll this request's status")


class ProviderConversion(Metrics):
    scope: Literal["project", "overall"]
    project_id: int | None = Field(description="null in the overall (all projects) rows")
    provider_id: int | None = Field(description="null: numbers without a provider")
    provider_code: str | None
    provider_name: str | None


class GeoConversion(Metrics):
    scope: Literal["project", "overall"]
    project_id: int | None = Field(description="null in the overall (all projects) rows")
    geo_id: int | None = Field(description="null: numbers without a geo")
    country_code: str | None
    region: str | None
    city: str | None


class DailyCallOutcomes(BaseModel):
    project_id: int
    call_date: dt.date = Field(description="UTC day of the events")
    events: int
    calls_started: int
    calls: int = Field(description="call_ended events")
    results: int
    success_results: int
    failed_results: int
    no_answer_results: int
    other_results: int
    success_rate: float = Field(description="success_results / results * 100 (0 if none)")
