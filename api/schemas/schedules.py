from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema

from api.schemas.common import TIME_SCHEMA, LocalTime

TimeOut = Annotated[
    dt.time, PlainSerializer(lambda t: t.isoformat(), return_type=str), WithJsonSchema(TIME_SCHEMA)
]
Weekday = Annotated[int, Field(ge=0, le=6, description="0 = Monday ... 6 = Sunday")]


class ScheduleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    project_id: int
    weekday: int
    start_time: TimeOut
    end_time: TimeOut
    is_active: bool
    created_at: dt.datetime
    updated_at: dt.datetime


class ScheduleCreate(BaseModel):
    """start_time < end_time and no overlap with another active window that weekday (checked
    by the router, which reports them under `end_time` / `start_time`)."""

    model_config = ConfigDict(extra="forbid", strict=True)  # no coercion: "1" is not 1

    weekday: Weekday
    start_time: LocalTime
    end_time: LocalTime
    is_active: bool = True


class ScheduleReplace(ScheduleCreate):
    """PUT: every field."""


class SchedulePatch(BaseModel):
    """PATCH: any subset; the merged window is checked (start < end, no overlap)."""

    model_config = ConfigDict(extra="forbid", strict=True)  # no coercion: "1" is not 1

    weekday: Weekday = None  # type: ignore[assignment]  # omitted = unchanged; null is refused
    start_time: LocalTime = None  # type: ignore[assignment]
    end_time: LocalTime = None  # type: ignore[assignment]
    is_active: bool = None  # type: ignore[assignment]
