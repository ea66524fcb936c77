"""Eligibility as SQL: the one predicate "may this number be called at `now`", built here and
reused by the numbers list, exports, the callable summary and (later) the dial queue.

The time rules are not evaluated per row. The set of zones callable at a moment is small and the
same for every number of a project, so it is computed once per distinct project schedule from
`policy.callable_zones` over every IANA zone; the predicate then is a plain membership test on
`phone_numbers.timezone` / `timezone_set_id` (ambiguous numbers: sets whose every zone is
callable), plus the do-not-call anti-join. Cost: ~600 zone checks per distinct schedule and three
small reads (holidays near `now`, the projects' schedules, `timezone_sets`).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    ColumnElement,
    Text,
    and_,
    any_,
    exists,
    false,
    func,
    literal,
    not_,
    or_,
    select,
)
from sqlalchemy.orm import Session

from models.dialing import counts, policy
from models.tables import DncEntry, Holiday, PhoneNumber, ProjectSchedule, TimezoneSet

P = PhoneNumber.__table__.c
D = DncEntry.__table__.c


@lru_cache(maxsize=1)
def all_zones() -> frozenset[str]:
    """Every zone a number can carry: the IANA zones this machine knows (geo rows, the
    registry table and libphonenumber all resolve to these)."""
    return frozenset(zoneinfo.available_timezones())


def calendar_window(now: dt.datetime) -> tuple[dt.date, dt.date]:
    """The days a verdict at `now` can look at: local dates around now up to the horizon."""
    return (now - dt.timedelta(days=2)).date(), (
        now + dt.timedelta(days=policy.HORIZON_DAYS + 2)
    ).date()


def calendar_of(rows: Iterable[tuple[dt.date, bool]]) -> policy.Calendar:
    """(day, is_working_day) rows of the holidays table -> the policy's calendar."""
    rows = list(rows)
    return policy.Calendar(
        holidays=frozenset(d for d, working in rows if not working),
        working_days=frozenset(d for d, working in rows if working),
    )


def load_calendar(session: Session, now: dt.datetime) -> policy.Calendar:
    lo, hi = calendar_window(now)
    return calendar_of(
        session.execute(
            select(Holiday.day, Holiday.is_working_day).where(Holiday.day.between(lo, hi))
        ).all()
    )


def load_schedules(
    session: Session, project_ids: Sequence[int] | None
) -> dict[int, policy.Schedule]:
    """Active schedules of these projects (all projects with one when None)."""
    stmt = select(
        ProjectSchedule.project_id,
        ProjectSchedule.weekday,
        ProjectSchedule.start_time,
        ProjectSchedule.end_time,
    ).where(ProjectSchedule.is_active)
    if project_ids is not None:
        stmt = stmt.where(ProjectSchedule.project_id.in_(list(project_ids)))
    rows: dict[int, list[tuple[int, dt.time, dt.time]]] = {}
    for pid, weekday, start, end in session.execute(stmt):
        rows.setdefault(pid, []).append((weekday, start, end))
    return {pid: policy.Schedule.from_rows(r) for pid, r in rows.items()}


def dnc_listed(now: dt.datetime | ColumnElement[Any]) -> ColumnElement[bool]:
    """An active do-not-call entry covers the row: global or its project's, not expired."""
    return exists().where(
        D.phone_number == P.phone_number,
        or_(D.project_id.is_(None), D.project_id == P.project_id),
        or_(D.expires_at.is_(None), D.expires_at > now),
    )


def dnc_listed_scan(project_id: int, now: dt.datetime) -> ColumnElement[bool]:
    """`dnc_listed` for a scan of one whole project: an uncorrelated IN, which PostgreSQL hashes
    once per query instead of probing the index per row. (A lease, which stops after a few rows,
    keeps the correlated probe: hashing a long global list per lease would cost more.)"""
    return P.phone_number.in_(
        select(D.phone_number).where(
            or_(D.project_id.is_(None), D.project_id == project_id),
            or_(D.expires_at.is_(None), D.expires_at > now),
        )
    )


@dataclass(frozen=True)
class Snapshot:
    """What is callable at `now` for one schedule: zones, and ids of candidate sets."""

    zones: frozenset[str]
    set_ids: tuple[int, ...]
    unknown_ok: bool


def _snapshot(
    now: dt.datetime,
    calendar: policy.Calendar,
    schedule: policy.Schedule,
    config: policy.PolicyConfig,
    sets: Sequence[tuple[int, Sequence[str]]],
) -> Snapshot:
    zones = policy.callable_zones(all_zones(), now, calendar, schedule, config)
    set_ids = tuple(sid for sid, members in sets if members and set(members) <= zones)
    unknown_ok = config.unknown_zone is not None and config.unknown_zone in zones
    return Snapshot(zones, set_ids, unknown_ok)


def _time_ok(s: Snapshot) -> ColumnElement[bool]:
    parts: list[ColumnElement[bool]] = []
    # One array parameter each, not one per zone: ~600 bound values cost more to render and for
    # the driver to parse than the dial queue's whole lease statement takes to run.
    if s.zones:
        parts.append(P.timezone == any_(literal(sorted(s.zones), ARRAY(Text))))
    if s.set_ids:
        parts.append(
            and_(
                P.timezone.is_(None),
                P.timezone_set_id == any_(literal(list(s.set_ids), ARRAY(BigInteger))),
            )
        )
    if s.unknown_ok:  # unknown, or not resolved yet
        parts.append(and_(P.timezone.is_(None), P.timezone_set_id.is_(None)))
    return or_(*parts) if parts else false()


def callable_condition(
    session: Session,
    now: dt.datetime,
    project_ids: Sequence[int] | None,
    config: policy.PolicyConfig,
) -> ColumnElement[bool]:
    """The predicate on phone_numbers: callable at `now` (never NULL). `project_ids`: the
    projects the query can touch (None: any), to read only their schedules."""
    return func.coalesce(
        and_(time_condition(session, now, project_ids, config), not_(dnc_listed(literal(now)))),
        False,
    )


@dataclass(frozen=True)
class TimeInputs:
    """What the time rules read from the database: holidays near `loaded_for`, the projects'
    schedules, the ambiguous-zone sets. Small, and the same for every row; the dial queue keeps
    them a few seconds per process (models/dialing/queue_plan.py)."""

    calendar: policy.Calendar
    schedules: dict[int, policy.Schedule]
    sets: tuple[tuple[int, tuple[str, ...]], ...]


def load_time_inputs(
    session: Session, now: dt.datetime, project_ids: Sequence[int] | None
) -> TimeInputs:
    sets = tuple(
        (r[0], tuple(r[1] or ()))
        for r in session.execute(select(TimezoneSet.id, TimezoneSet.zones))
    )
    return TimeInputs(load_calendar(session, now), load_schedules(session, project_ids), sets)


def time_condition(
    session: Session,
    now: dt.datetime,
    project_ids: Sequence[int] | None,
    config: policy.PolicyConfig,
) -> ColumnElement[bool]:
    """The time rules alone (local hours, holidays, schedules), without the do-not-call check:
    for callers that test DNC their own way (the dial queue). May be NULL; coalesce it."""
    return time_condition_of(load_time_inputs(session, now, project_ids), now, config)


def time_condition_of(
    inputs: TimeInputs, now: dt.datetime, config: policy.PolicyConfig
) -> ColumnElement[bool]:
    """`time_condition` from inputs already read. Exact for the whole UTC minute of `now`: the
    windows are whole minutes and so are today's zone offsets."""
    schedules = inputs.schedules
    groups: dict[Any, list[int]] = {}
    for pid, schedule in schedules.items():
        groups.setdefault(schedule.key(), []).append(pid)
    branches: list[ColumnElement[bool]] = []
    for pids in groups.values():
        snap = _snapshot(now, inputs.calendar, schedules[pids[0]], config, inputs.sets)
        branches.append(and_(P.project_id.in_(sorted(pids)), _time_ok(snap)))
    default = _snapshot(now, inputs.calendar, policy.NO_SCHEDULE, config, inputs.sets)
    scheduled = sorted(schedules)
    branches.append(
        and_(P.project_id.not_in(scheduled), _time_ok(default)) if scheduled else _time_ok(default)
    )
    return or_(*branches)


def verdict_for(
    session: Session,
    *,
    project_id: int,
    timezone: str | None,
    candidates: Sequence[str] | None,
    listed: bool,
    now: dt.datetime,
    config: policy.PolicyConfig,
) -> policy.Verdict:
    """One number's verdict (the pop-up): DNC first, then the time rules."""
    if listed:
        return policy.Verdict(False, policy.REASON_DNC, None)
    zones = (timezone,) if timezone else tuple(candidates or ())
    schedule = load_schedules(session, [project_id]).get(project_id, policy.NO_SCHEDULE)
    return policy.evaluate(zones, now, load_calendar(session, now), schedule, config)


def is_listed(session: Session, phone: str, project_id: int, now: dt.datetime) -> bool:
    return bool(
        session.scalar(
            select(
                exists().where(
                    D.phone_number == phone,
                    or_(D.project_id.is_(None), D.project_id == project_id),
                    or_(D.expires_at.is_(None), D.expires_at > now),
                )
            )
        )
    )


@dataclass
class ZoneSummary:
    timezone: str | None
    candidates: list[str] | None
    numbers: int
    callable_now: bool
    reason: str | None
    next_window_opens: dt.datetime | None


@dataclass
class ProjectSummary:
    project_id: int
    at: dt.datetime
    total: int
    callable_now: int
    dnc: int
    zones: list[ZoneSummary]


def _group_verdict(
    zones: tuple[str, ...] | None,
    now: dt.datetime,
    calendar: policy.Calendar,
    schedule: policy.Schedule,
    config: policy.PolicyConfig,
) -> policy.Verdict:
    """`policy.evaluate`, memoised per minute: the rules read the local hour and minute only and
    every window starts on a whole minute, so the verdict at `now` is the one at its minute
    (a callable one's `next_open` is `now` itself). The summary's Python time was ~1 ms per
    closed group (the next-window search); repeated requests within a minute reuse it."""
    minute = now.replace(second=0, microsecond=0)
    verdict = _verdict_at(zones, minute, calendar, schedule.key(), config)
    return policy.Verdict(True, None, now) if verdict.callable else verdict


@lru_cache(maxsize=4096)
def _verdict_at(
    zones: tuple[str, ...] | None,
    minute: dt.datetime,
    calendar: policy.Calendar,
    schedule_key: tuple[Any, ...],
    config: policy.PolicyConfig,
) -> policy.Verdict:
    return policy.evaluate(zones, minute, calendar, policy.Schedule(dict(schedule_key)), config)


def project_summary(
    session: Session, project_id: int, now: dt.datetime, config: policy.PolicyConfig
) -> ProjectSummary:
    """Numbers of a project callable at `now`, by zone (ambiguous numbers by candidate set,
    unknown/unresolved as one group), with when each group's next window opens. The time rules
    run once per group, not per number."""
    # Maintained counts (models/dialing/counts.py, exact: kept by triggers), not a scan of the
    # project: the time rules then run once per group, DNC expiry is applied at `now`.
    counted = counts.read(session, project_id, now)
    groups = [(g.timezone, g.timezone_set_id, g.free) for g in counted if g.free]
    dnc = sum(g.listed for g in counted)
    set_ids = [g[1] for g in groups if g[0] is None and g[1] is not None]
    members = dict(
        session.execute(
            select(TimezoneSet.id, TimezoneSet.zones).where(TimezoneSet.id.in_(set_ids))
        ).all()
    )
    calendar = load_calendar(session, now)
    schedule = load_schedules(session, [project_id]).get(project_id, policy.NO_SCHEDULE)
    zones: list[ZoneSummary] = []
    merged: dict[tuple[str | None, tuple[str, ...] | None], int] = {}
    for tz, sid, n in groups:
        cands = tuple(members.get(sid) or ()) if tz is None and sid is not None else None
        key = (tz, cands or None)
        merged[key] = merged.get(key, 0) + int(n)
    for (tz, cands), n in merged.items():
        verdict = _group_verdict((tz,) if tz else cands, now, calendar, schedule, config)
        zones.append(
            ZoneSummary(
                timezone=tz,
                candidates=list(cands) if cands else None,
                numbers=n,
                callable_now=verdict.callable,
                reason=verdict.reason,
                next_window_opens=verdict.next_open,
            )
        )
    zones.sort(key=lambda z: (-z.numbers, z.timezone or "~"))
    total = sum(z.numbers for z in zones) + int(dnc)
    return ProjectSummary(
        project_id=project_id,
        at=now,
        total=total,
        callable_now=sum(z.numbers for z in zones if z.callable_now),
        dnc=int(dnc),
        zones=zones,
    )
