"""Request and response bodies of /api/phone-numbers/."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from api.schemas.common import Id, JsonObject, StoredJsonObject
from models.tables import NUMBER_STATUSES

Status = Literal["new", "in_progress", "success", "failed", "no_answer"]
assert set(Status.__args__) == set(NUMBER_STATUSES)  # type: ignore[attr-defined]

MAX_BULK_NUMBERS = 100_000
MAX_BULK_IDS = 100_000


class _In(BaseModel):
    # No coercion, as docs/api.md promises: "16", 16.0 and true are not the integer 16.
    model_config = ConfigDict(extra="forbid", strict=True)


class NumberOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    phone_number: str
    project_id: int
    provider_id: int | None
    geo_id: int | None
    status: str
    call_attempts: int
    last_call_at: dt.datetime | None
    result_data: StoredJsonObject
    attributes: StoredJsonObject
    created_at: dt.datetime
    updated_at: dt.datetime
    timezone: str | None = Field(
        None, description="IANA zone; null when ambiguous or unknown (docs/dialing-rules.md)"
    )
    timezone_source: str | None = Field(
        None, description="geo, registry, libphonenumber, ambiguous, unknown (null: not yet)"
    )
    region: str | None = Field(None, description="the numbering-plan registry's region")
    operator: str | None = Field(None, description="the numbering-plan registry's operator")
    source_load_id: int | None = Field(
        None, description="the load that inserted it (GET /api/imports/{id}/); null: unknown"
    )
    priority: int = Field(0, description="dial-queue priority, higher first")
    next_attempt_at: dt.datetime | None = Field(
        None, description="dial queue: not before this (docs/dial-queue.md)"
    )
    leased_until: dt.datetime | None = Field(None, description="dial queue: lease expiry")
    leased_by: str | None = Field(None, description="dial queue: the lease holder")


class NumberPage(BaseModel):
    """The contract's page plus what 10M rows need: `count_is_estimate`, and keyset cursors.

    Page mode: `count` exact, or the planner's estimate when counting would be slow
    (`count_is_estimate: true`). Cursor mode: no count (`null`), `next_cursor` for the next page.
    """

    count: int | None
    count_is_estimate: bool = False
    next: str | None
    previous: str | None
    next_cursor: str | None = None
    results: list[NumberOut]


class NumberCreate(_In):
    phone_number: str = Field(min_length=1, max_length=64, description="any format; stored E.164")
    project_id: Id
    provider_id: Id | None = None
    geo_id: Id | None = None
    status: Status = "new"
    attributes: JsonObject | None = None
    result_data: JsonObject | None = None


class NumberPatch(_In):
    status: Status | None = None
    provider_id: Id | None = Field(None, description="null clears it")
    geo_id: Id | None = Field(None, description="null clears it")
    result_data: JsonObject | None = Field(
        None,
        description="merged into the stored object by default (top-level keys; a key set to "
        "null is removed); `result_data_mode: replace` stores it as given",
    )
    result_data_mode: Literal["merge", "replace"] = "merge"
    priority: int | None = Field(
        None, ge=-1_000_000, le=1_000_000, description="dial-queue priority, higher first"
    )
    force: bool = Field(False, description="admins only: skip the status transition rules")


class BulkItem(_In):
    phone_number: str | int = Field(description="any format")
    attributes: JsonObject | None = None


def _as_item(value: object) -> object:
    # A bare phone is the short form of {"phone_number": ...}: one model validates both, so an
    # error is named numbers.<i>.<field>, not once per member of a union.
    if isinstance(value, str):
        return {"phone_number": value}
    return value


BulkEntry = Annotated[BulkItem, BeforeValidator(_as_item, json_schema_input_type=str | BulkItem)]


class BulkCreateIn(_In):
    project_id: Id
    provider_id: Id | None = None
    geo_id: Id | None = None
    region: str | None = Field(None, min_length=2, max_length=2, description="default: server's")
    numbers: list[BulkEntry] = Field(min_length=1, max_length=MAX_BULK_NUMBERS)


class RejectOut(BaseModel):
    line: int
    raw: str
    reason: str


class BulkCreateOut(BaseModel):
    project_id: int
    read: int
    inserted: int
    duplicate_in_input: int
    already_present: int
    invalid: int
    on_dnc: int = Field(0, description="numbers of the input on an active do-not-call entry")
    rejects: list[RejectOut] = Field(description="the first 1000 rejected rows")
    seconds: float
    duplicate_elsewhere: int = Field(
        0,
        description="skipped by the project's dedupe scope (in another project / called "
        "recently); their rejects say only 'already in another project'",
    )
    load_id: int | None = Field(None, description="the load's record: GET /api/imports/{id}/")


class BulkUpdateSet(_In):
    status: Status | None = None
    provider_id: Id | None = Field(None, description="null clears it")
    geo_id: Id | None = Field(None, description="null clears it")
    project_id: Id | None = Field(None, description="move to this project")


class BulkUpdateIn(_In):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    ids: list[Id] | None = Field(None, min_length=1, max_length=MAX_BULK_IDS)
    filter: JsonObject | None = Field(None, description="the list's filters, as a JSON object")
    changes: BulkUpdateSet = Field(alias="set")
    dry_run: bool = False
    force: bool = Field(False, description="admins only: skip the status transition rules")


class BulkUpdateOut(BaseModel):
    dry_run: bool
    matched: int = Field(description="numbers in scope selected by the ids or the filter")
    updated: int = Field(description="rows changed (dry run: rows that would change)")
