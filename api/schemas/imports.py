"""Bodies of /api/imports/ (recorded loads) and /api/providers/{id}/quality/ (lead quality
marts; definitions in dbt_project/macros/lead_quality.sql and docs/lead-quality.md)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

# Stored as numeric(14, 2): cents.
LeadCost = Annotated[float, Field(ge=0, le=999_999_999_999.99, allow_inf_nan=False)]


class ImportOut(BaseModel):
    """One recorded load: an SFTP file's import or an API bulk request, and its counts."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: Literal["sftp", "api"]
    project_id: int
    provider_id: int | None
    sftp_job_id: int | None = Field(description="the SFTP job (GET /api/sftp/jobs/{id}/)")
    source: str | None = Field(description="the file's inbox path, or json / csv:<name>")
    dedupe_scope: Literal["project", "all_projects"] = Field(description="the rule that applied")
    dedupe_window_days: int | None
    rows_read: int
    inserted: int
    duplicate_in_input: int
    already_present: int
    duplicate_elsewhere: int = Field(description="skipped by the dedupe scope")
    invalid: int
    lead_cost: float | None = Field(description="what the load cost in total (PATCH to set)")
    created_by: int | None
    created_at: dt.datetime
    updated_at: dt.datetime


class NumberFigures(BaseModel):
    """What became of the numbers (a mart row); shares and rates in percent, 0-100."""

    numbers: int = Field(description="numbers the load(s) inserted that still exist")
    dialled_numbers: int = Field(description="call_attempts > 0")
    reached_numbers: int = Field(description="status success or failed: a conversation")
    success_numbers: int
    failed_numbers: int
    no_answer_numbers: int
    finished_numbers: int = Field(description="success + failed + no_answer")
    call_attempts: int
    dialled_share: float
    reached_share: float
    conversion_rate: float = Field(description="success / finished * 100")
    attempts_per_success: float | None
    median_hours_to_first_call: float | None
    calculated_at: dt.datetime = Field(description="the dbt run that computed the row")


class LoadFigures(NumberFigures):
    rows_read: int
    inserted: int
    duplicate_in_input: int
    already_present: int
    duplicate_elsewhere: int
    invalid: int
    invalid_share: float
    duplicate_share: float
    lead_cost: float | None
    cost_per_success: float | None


class ImportDetail(ImportOut):
    quality: NumberFigures | None = Field(
        description="from the lead quality mart (null until dbt has run since the load)"
    )


class ImportPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    lead_cost: LeadCost | None = Field(description="total cost of the load; null clears it")


class ProviderRow(LoadFigures):
    project_id: int | None = Field(description="null on the all-projects row (admins only)")
    loads: int


class GeoRow(NumberFigures):
    project_id: int | None
    geo_id: int | None = Field(description="the number's geo; null: none")


class CohortRow(LoadFigures):
    project_id: int | None
    cohort_week: dt.date = Field(description="Monday of the loads' week (UTC)")
    loads: int


class ProviderQuality(BaseModel):
    provider_id: int
    computed: bool = Field(description="false until the lead quality marts have been built")
    overall: ProviderRow | None = Field(
        description="every live project together: administrators only, without project_id"
    )
    by_project: list[ProviderRow]
    by_geo: list[GeoRow]
    cohorts: list[CohortRow] = Field(description="weekly load cohorts, newest first")
