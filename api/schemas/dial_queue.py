"""Bodies of the dial-queue routes: dialing rules, lease/release, queue state, reset."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.common import Id
from models.dialing.queue_rules import MAX_RETRY_SECONDS, OUTCOMES
from models.tables import HAND_OUT_ORDERS

HandOutOrder = Literal["priority_then_oldest", "fresh_first", "retries_first"]
assert set(HandOutOrder.__args__) == set(HAND_OUT_ORDERS)  # type: ignore[attr-defined]
Outcome = Literal["no_answer", "busy", "voicemail", "failed"]
assert set(Outcome.__args__) == set(OUTCOMES)  # type: ignore[attr-defined]
ReleaseOutcome = Literal["success", "no_answer", "busy", "voicemail", "failed"]
# A holder names an agent or a dialer channel: printable, no NUL, bounded.
HOLDER_PATTERN = r"^[^\x00-\x1f\x7f]+$"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OutcomeRuleIO(_In):
    final: bool = Field(description="true: the number is never dialled again after this outcome")
    retry_seconds: int = Field(
        ge=0, le=MAX_RETRY_SECONDS, description="wait this long before the next attempt"
    )


class OutcomeRulePatch(_In):
    final: bool | None = None
    retry_seconds: int | None = Field(None, ge=0, le=MAX_RETRY_SECONDS)


class DialingRulesOut(BaseModel):
    project_id: int
    max_attempts: int
    min_gap_seconds: int
    hand_out_order: HandOutOrder
    outcomes: dict[str, OutcomeRuleIO]
    is_default: bool = Field(description="true: the project has no rules of its own yet")


class DialingRulesPut(_In):
    max_attempts: int = Field(ge=1, le=1000)
    min_gap_seconds: int = Field(ge=0, le=MAX_RETRY_SECONDS)
    hand_out_order: HandOutOrder
    outcomes: dict[Outcome, OutcomeRuleIO] = Field(
        description="every outcome may be given; those left out keep their defaults"
    )


class DialingRulesPatch(_In):
    max_attempts: int | None = Field(None, ge=1, le=1000)
    min_gap_seconds: int | None = Field(None, ge=0, le=MAX_RETRY_SECONDS)
    hand_out_order: HandOutOrder | None = None
    outcomes: dict[Outcome, OutcomeRulePatch] | None = None


class LeaseIn(_In):
    count: int = Field(1, ge=1, le=100)
    holder: str = Field(min_length=1, max_length=150, pattern=HOLDER_PATTERN)
    lease_seconds: int = Field(300, ge=10, le=3600)


class LeasedNumber(BaseModel):
    id: int
    phone_number: str
    status_before: str
    call_attempts: int
    priority: int


class LeaseOut(BaseModel):
    holder: str
    leased_until: dt.datetime
    numbers: list[LeasedNumber]


class ReleaseIn(_In):
    holder: str = Field(min_length=1, max_length=150, pattern=HOLDER_PATTERN)
    ids: list[Id] = Field(min_length=1, max_length=1000)
    outcome: ReleaseOutcome | None = Field(
        None,
        description="null: given back unused (status new, or no_answer if called before); "
        "else the call's outcome (counts an attempt, schedules the retry)",
    )


class ReleasedNumber(BaseModel):
    id: int
    status: str


class ReleaseOut(BaseModel):
    released: list[ReleasedNumber]
    not_held: list[int] = Field(description="ids not leased by this holder: left unchanged")


class QueueCounts(BaseModel):
    eligible: int = Field(description="may be leased now")
    waiting_retry: int = Field(description="next attempt time or minimum gap not reached")
    outside_hours: int = Field(description="not callable now in local time")
    exhausted: int = Field(description="attempts at the project's maximum")
    final: int = Field(description="success, or an outcome the rules call final")
    dnc: int = Field(description="on an active do-not-call entry")
    leased: int = Field(description="handed out, lease not expired")
    paused: int = Field(description="would be eligible, but the project is not active")


class QueueStateOut(BaseModel):
    project_id: int
    at: dt.datetime
    project_active: bool
    total: int
    counts: QueueCounts
    next_retry_at: dt.datetime | None = Field(description="when the first waiting number opens")
    retries_opening_next_hour: int


class ResetFilterIn(_In):
    status: list[Literal["new", "in_progress", "no_answer", "failed"]] | None = Field(
        None, max_length=5
    )
    phone_prefix: str | None = Field(None, pattern=r"^\+[0-9]{1,14}$")


class ResetIn(_In):
    dry_run: bool = Field(True, description="count only (the default)")
    filter: ResetFilterIn | None = None


class ResetOut(BaseModel):
    project_id: int
    dry_run: bool
    matched: int = Field(description="exhausted numbers matched (dry run) or reset")
