"""The pop-up's dialing facts (zone, region, operator, DNC, callable now and if not why and
when), added to each card from columns of the pop-up's own query.

Everything the verdict needs is read by that one statement: the number's dialing columns and
zone set, an active do-not-call entry (global or the project's), the project's active schedule
and the holidays near now (an uncorrelated subquery, run once per statement). Reading them with
separate statements on a second connection cost four round trips and a pool checkout per lookup
and cut the pop-up's capacity by two thirds (docs/benchmarks.md, "SoftPhone re-run").
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import DateTime, Row, bindparam, func, select
from sqlalchemy.sql.elements import ColumnElement

from api.schemas.dialing import DialingCard
from api.schemas.softphone import NumberCard
from models.dialing import policy
from models.dialing.eligibility import calendar_of, calendar_window, dnc_listed
from models.tables import Holiday, PhoneNumber, ProjectSchedule, TimezoneSet

_NOW = bindparam("now", type_=DateTime(timezone=True))

_SCHEDULE = (
    select(
        func.json_agg(
            func.json_build_array(
                ProjectSchedule.weekday, ProjectSchedule.start_time, ProjectSchedule.end_time
            )
        )
    )
    .where(ProjectSchedule.project_id == PhoneNumber.project_id, ProjectSchedule.is_active)
    .correlate(PhoneNumber)
    .scalar_subquery()
)
_HOLIDAYS = (
    select(func.json_agg(func.json_build_array(Holiday.day, Holiday.is_working_day)))
    .where(Holiday.day.between(bindparam("cal_lo"), bindparam("cal_hi")))
    .scalar_subquery()
)

# Added to the pop-up's select list; the join below brings the zone set.
COLUMNS: list[ColumnElement[Any]] = [
    PhoneNumber.timezone.label("d_timezone"),
    PhoneNumber.timezone_source.label("d_timezone_source"),
    PhoneNumber.region.label("d_region"),
    PhoneNumber.operator.label("d_operator"),
    TimezoneSet.zones.label("d_zones"),
    dnc_listed(_NOW).label("d_dnc"),
    _SCHEDULE.label("d_schedule"),
    _HOLIDAYS.label("d_holidays"),
]
JOIN_TARGET, JOIN_ON = TimezoneSet, TimezoneSet.id == PhoneNumber.timezone_set_id


def params(now: dt.datetime) -> dict[str, Any]:
    lo, hi = calendar_window(now)
    return {"now": now, "cal_lo": lo, "cal_hi": hi}


def _schedule(raw: Any) -> policy.Schedule:
    if not raw:
        return policy.NO_SCHEDULE
    return policy.Schedule.from_rows(
        (int(d), dt.time.fromisoformat(s), dt.time.fromisoformat(e)) for d, s, e in raw
    )


def with_dialing(
    rows: list[Row[Any]], cards: list[NumberCard], now: dt.datetime, settings: Any
) -> list[NumberCard]:
    """Fill each card's `dialing` from its row (the same order as `cards`)."""
    if not cards:
        return cards
    config = policy.PolicyConfig.from_settings(settings)
    calendar = calendar_of(
        (dt.date.fromisoformat(d), bool(w)) for d, w in (rows[0].d_holidays or [])
    )
    for row, card in zip(rows, cards, strict=True):
        tz = row.d_timezone
        cands = list(row.d_zones) if row.d_zones and not tz else None
        if row.d_dnc:
            verdict = policy.Verdict(False, policy.REASON_DNC, None)
        else:
            schedule = _schedule(row.d_schedule)
            verdict = policy.evaluate((tz,) if tz else cands, now, calendar, schedule, config)
        card.dialing = DialingCard(
            timezone=tz,
            timezone_source=row.d_timezone_source,
            candidates=cands,
            region=row.d_region,
            operator=row.d_operator,
            local_time=now.astimezone(policy.zone_info(tz)) if tz else None,
            dnc=bool(row.d_dnc),
            callable_now=verdict.callable,
            reason=verdict.reason,
            next_window_opens=verdict.next_open,
        )
    return cards
