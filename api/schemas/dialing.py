"""Bodies of the dialing routes: callable summary, holidays, do-not-call lists."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field


class ZoneCallable(BaseModel):
    timezone: str | None = Field(description="null: ambiguous (see candidates) or unknown")
    candidates: list[str] | None = Field(description="an ambiguous group's candidate zones")
    numbers: int
    callable_now: bool
    reason: str | None = Field(description="why not: outside_legal_hours, holiday, ...")
    next_window_opens: dt.datetime | None = Field(
        description="now when callable; null when no window opens within 21 days"
    )


class CallableSummary(BaseModel):
    project_id: int
    at: dt.datetime
    total: int
    callable_now: int
    dnc: int = Field(description="numbers on an active do-not-call entry (never callable)")
    zones: list[ZoneCallable]


class HolidayIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    day: dt.date
    name: str = Field(min_length=1, max_length=255, pattern=r"^[^\x00]*$")
    is_working_day: bool = Field(
        False, description="true: a weekend day that is a working day (a moved day off)"
    )


class HolidayOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    day: dt.date
    name: str
    is_working_day: bool
    created_at: dt.datetime


class DialingCard(BaseModel):
    """The pop-up's dialing facts for one card."""

    timezone: str | None
    timezone_source: str | None
    candidates: list[str] | None
    region: str | None
    operator: str | None
    local_time: dt.datetime | None = Field(description="now in the number's zone, if known")
    dnc: bool = Field(description="on an active do-not-call entry (global or the project's)")
    callable_now: bool
    reason: str | None = Field(description="why not callable now")
    next_window_opens: dt.datetime | None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


Reason = Field(min_length=1, max_length=1000, pattern=r"^[^\x00]*$")
Source = Field("manual", min_length=1, max_length=50, pattern=r"^[A-Za-z0-9_.:-]+$")


class DncIn(_Strict):
    phone_number: str = Field(min_length=1, max_length=64, description="any format; stored E.164")
    project_id: int | None = Field(None, ge=1, description="null: the global list (admins)")
    reason: str = Reason
    source: str = Source
    expires_at: dt.datetime | None = Field(None, description="null: never expires")


class DncPatch(_Strict):
    reason: str | None = Field(None, min_length=1, max_length=1000, pattern=r"^[^\x00]*$")
    expires_at: dt.datetime | None = Field(None, description="null makes it permanent")


class DncOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    project_id: int | None
    phone_number: str
    reason: str
    source: str
    expires_at: dt.datetime | None
    added_by: int | None
    created_at: dt.datetime
    updated_at: dt.datetime


class DncBulkIn(_Strict):
    project_id: int | None = Field(None, ge=1, description="null: the global list (admins)")
    reason: str = Reason
    source: str = Source
    expires_at: dt.datetime | None = None
    numbers: list[str | int] = Field(min_length=1, max_length=100_000)


class DncRejectOut(BaseModel):
    line: int
    raw: str
    reason: str


class DncBulkOut(BaseModel):
    project_id: int | None
    read: int
    added: int
    updated: int = Field(description="already listed; reason/source/expiry replaced")
    invalid: int
    rejects: list[DncRejectOut]
