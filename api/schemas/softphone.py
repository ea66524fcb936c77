"""SoftPhone webhook events and pop-up cards."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.schemas.common import Id, JsonObject, JsonValue, StoredJsonObject
from api.schemas.dialing import DialingCard

EventType = Literal["call_started", "call_ended", "call_result"]
ResultStatus = Literal["success", "failed", "no_answer"]
EventResultKind = Literal["accepted", "duplicate", "unmatched", "error"]
_NO_NUL = r"^[^\x00]*$"


class CallEventIn(BaseModel):
    """One event as the softphone sends it; unknown fields are kept in the stored payload
    (each within the JSON limits, like result_data)."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, JsonValue] = Field(init=False)  # type: ignore[assignment]

    event_id: str = Field(
        min_length=1, max_length=128, pattern=_NO_NUL, description="the sender's unique id"
    )
    event_type: EventType
    phone_number: str = Field(min_length=1, max_length=64, description="any format")
    occurred_at: dt.datetime = Field(description="ISO 8601; without an offset it means UTC")
    call_id: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        pattern=_NO_NUL,
        description="groups one call's events (ordering)",
    )
    project_id: Id | None = None
    project_code: str | None = Field(None, min_length=1, max_length=63, pattern=_NO_NUL)
    status: ResultStatus | None = Field(None, description="required for call_result")
    result_data: JsonObject | None = Field(
        None, description="call_result: merged into the number's result_data"
    )

    @model_validator(mode="after")
    def _result_needs_status(self) -> CallEventIn:
        if self.event_type == "call_result" and self.status is None:
            raise ValueError("call_result needs a status (success, failed or no_answer)")
        return self


class EventResult(BaseModel):
    index: int
    event_id: str | None
    result: EventResultKind
    reason: str | None = None
    phone_number_id: int | None = None
    project_id: int | None = None


class WebhookResponse(BaseModel):
    received: int
    accepted: int
    duplicates: int
    unmatched: int
    errors: int
    results: list[EventResult]


class ProjectRef(BaseModel):
    id: int
    code: str
    name: str


class ProviderRef(BaseModel):
    id: int
    code: str
    name: str


class GeoRef(BaseModel):
    id: int
    country_code: str | None
    region: str | None
    city: str | None
    timezone: str | None


class RecentEvent(BaseModel):
    event_id: str
    event_type: str
    occurred_at: dt.datetime
    received_at: dt.datetime
    call_id: str | None = None
    status: str | None = None
    result_data: StoredJsonObject = None


class LastResult(BaseModel):
    event_id: str
    status: str | None
    occurred_at: dt.datetime
    result_data: StoredJsonObject = None


class NumberCard(BaseModel):
    id: int
    phone_number: str
    project: ProjectRef
    provider: ProviderRef | None
    geo: GeoRef | None
    timezone: str | None = Field(description="the geo's time zone, else the number's own")
    timezone_source: Literal["geo", "phone"] | None
    local_time: dt.datetime | None = Field(description="now, in that time zone")
    status: str
    call_attempts: int
    last_call_at: dt.datetime | None
    last_result: LastResult | None
    result_data: StoredJsonObject
    attributes: StoredJsonObject
    recent_events: list[RecentEvent] = Field(description="the last 10, newest first")
    created_at: dt.datetime
    updated_at: dt.datetime
    dialing: DialingCard | None = Field(
        None, description="time zone, region, DNC, callable now (docs/dialing-rules.md)"
    )
    source_load: LoadRef | None = Field(None, description="null: loaded before loads were kept")


class LoadRef(BaseModel):
    """The load that brought the number (GET /api/imports/{id}/)."""

    id: int
    kind: Literal["sftp", "api"]
    source: str | None = Field(description="the file's inbox path, or json / csv:<name>")
    created_at: dt.datetime


class PopupResponse(BaseModel):
    phone_number: str
    count: int
    results: list[NumberCard]
