"""The calling policy: when a number may be called, in the *number's* local time.

Three rules, all of which must allow a moment (docs/dialing-rules.md):

* the **legal window** of the local day's type: working days 08:00-22:00, weekends and
  holidays 09:00-20:00 by default (230-FZ; `NUMBASE_DIALING_WORKDAY_HOURS`,
  `NUMBASE_DIALING_DAYOFF_HOURS`);
* the **holiday calendar** (`holidays` table, admins): a listed date is a day off, or a working
  day when `is_working_day` (a weekend moved to a working day);
* the **project's schedule** (`project_schedules`, weekday 0 = Monday): when the project has
  active rows, only inside one of that local weekday's windows; no rows = no restriction.

An ambiguous number (several candidate zones) is callable only when callable in *every*
candidate; an unknown zone follows `NUMBASE_DIALING_UNKNOWN_ZONE` (empty: never callable; a zone
name: treated as that zone). Every function takes `now` explicitly (an aware datetime), so
tests fix the clock without patching time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from zoneinfo import ZoneInfo

MINUTES_PER_DAY = 24 * 60
WEEKEND = frozenset({5, 6})  # Saturday, Sunday (date.weekday())
# How far ahead `next_open` looks (a project schedule may open once a week; holidays run ~10 days).
HORIZON_DAYS = 21

# Reasons a number is not callable, most specific first (the pop-up and the summary show them).
REASON_DNC = "dnc"
REASON_UNKNOWN = "unknown_timezone"
REASON_HOLIDAY = "holiday"
REASON_LEGAL = "outside_legal_hours"
REASON_SCHEDULE = "outside_project_schedule"

Interval = tuple[int, int]  # [start, end) in minutes of the local day


def parse_hours(text: str) -> Interval:
    """'08:00-22:00' -> (480, 1320); end may be 24:00. Raises ValueError naming the problem."""
    try:
        start_text, end_text = (part.strip() for part in text.split("-"))
        start, end = _minutes(start_text), _minutes(end_text)
    except ValueError:
        raise ValueError(f"hours must look like 08:00-22:00, got {text!r}") from None
    if not 0 <= start < end <= MINUTES_PER_DAY:
        raise ValueError(f"hours must be an increasing window within one day, got {text!r}")
    return start, end


def _minutes(text: str) -> int:
    hours, minutes = text.split(":")
    if not (hours.isdigit() and minutes.isdigit() and len(minutes) == 2):
        raise ValueError(text)
    value = int(hours) * 60 + int(minutes)
    if int(minutes) >= 60 or value > MINUTES_PER_DAY:
        raise ValueError(text)
    return value


@dataclass(frozen=True)
class PolicyConfig:
    workday: Interval = (8 * 60, 22 * 60)
    dayoff: Interval = (9 * 60, 20 * 60)
    unknown_zone: str | None = None  # None: numbers of unknown zone are never callable

    @classmethod
    def from_settings(cls, settings: object) -> PolicyConfig:
        return cls(
            workday=parse_hours(getattr(settings, "dialing_workday_hours", "08:00-22:00")),
            dayoff=parse_hours(getattr(settings, "dialing_dayoff_hours", "09:00-20:00")),
            unknown_zone=getattr(settings, "dialing_unknown_zone", None) or None,
        )


@dataclass(frozen=True)
class Calendar:
    holidays: frozenset[dt.date] = frozenset()
    working_days: frozenset[dt.date] = frozenset()  # weekends moved to working days

    def is_day_off(self, day: dt.date) -> bool:
        if day in self.working_days:
            return False
        return day in self.holidays or day.weekday() in WEEKEND


@dataclass(frozen=True)
class Schedule:
    """A project's active windows per weekday (0 = Monday); empty = no restriction."""

    windows: Mapping[int, tuple[Interval, ...]] = field(default_factory=dict)

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[int, dt.time, dt.time]]) -> Schedule:
        by_day: dict[int, list[Interval]] = {}
        for weekday, start, end in rows:
            by_day.setdefault(weekday, []).append((_of(start), _of(end)))
        return cls({d: tuple(sorted(w)) for d, w in by_day.items()})

    @property
    def restricts(self) -> bool:
        return bool(self.windows)

    def key(self) -> tuple[tuple[int, tuple[Interval, ...]], ...]:
        return tuple(sorted(self.windows.items()))


def _of(t: dt.time) -> int:
    return t.hour * 60 + t.minute + (1 if t.second or t.microsecond else 0)


NO_SCHEDULE = Schedule()


@lru_cache(maxsize=1024)
def zone_info(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _intersect(a: Sequence[Interval], b: Sequence[Interval]) -> list[Interval]:
    out = []
    for s1, e1 in a:
        for s2, e2 in b:
            lo, hi = max(s1, s2), min(e1, e2)
            if lo < hi:
                out.append((lo, hi))
    return sorted(out)


def open_intervals(
    day: dt.date, calendar: Calendar, schedule: Schedule, config: PolicyConfig
) -> list[Interval]:
    """The minutes of local `day` when every rule allows calling."""
    legal = [config.dayoff if calendar.is_day_off(day) else config.workday]
    if not schedule.restricts:
        return legal
    return _intersect(legal, schedule.windows.get(day.weekday(), ()))


@dataclass(frozen=True)
class Verdict:
    callable: bool
    reason: str | None  # why not (REASON_*), None when callable
    next_open: dt.datetime | None  # UTC; now when callable; None: not within HORIZON_DAYS


def _check_zone(
    zone: str, now: dt.datetime, calendar: Calendar, schedule: Schedule, config: PolicyConfig
) -> str | None:
    """None when callable in `zone` at `now`, else the rule that closes it."""
    local = now.astimezone(zone_info(zone))
    day, minute = local.date(), local.hour * 60 + local.minute
    day_off = calendar.is_day_off(day)
    start, end = config.dayoff if day_off else config.workday
    if not start <= minute < end:
        # A holiday closes it when a working day's window would have allowed this minute.
        ws, we = config.workday
        if day in calendar.holidays and day.weekday() not in WEEKEND and ws <= minute < we:
            return REASON_HOLIDAY
        return REASON_LEGAL
    if schedule.restricts and not any(
        s <= minute < e for s, e in schedule.windows.get(day.weekday(), ())
    ):
        return REASON_SCHEDULE
    return None


def _starts(
    zone: str, now: dt.datetime, calendar: Calendar, schedule: Schedule, config: PolicyConfig
) -> list[dt.datetime]:
    """UTC instants within the horizon at which an open interval of `zone` begins."""
    tz = zone_info(zone)
    today = now.astimezone(tz).date()
    out = []
    for offset in range(-1, HORIZON_DAYS + 1):
        day = today + dt.timedelta(days=offset)
        for start, _end in open_intervals(day, calendar, schedule, config):
            local = dt.datetime.combine(day, dt.time()) + dt.timedelta(minutes=start)
            out.append(local.replace(tzinfo=tz).astimezone(dt.UTC))
    return out


def evaluate(
    zones: Sequence[str] | None,
    now: dt.datetime,
    calendar: Calendar,
    schedule: Schedule = NO_SCHEDULE,
    config: PolicyConfig = PolicyConfig(),  # noqa: B008 - frozen, shared
) -> Verdict:
    """Whether a number with these candidate zones (one for a resolved number, several for an
    ambiguous one, none for unknown) may be called at `now`, why not, and when it may next."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if not zones:
        if config.unknown_zone is None:
            return Verdict(False, REASON_UNKNOWN, None)
        zones = (config.unknown_zone,)
    reasons = [_check_zone(z, now, calendar, schedule, config) for z in zones]
    closed = [r for r in reasons if r is not None]
    if not closed:
        return Verdict(True, None, now)
    reason = next((r for r in (REASON_HOLIDAY, REASON_SCHEDULE) if r in closed), closed[0])
    # Windows open on whole minutes, so the next opening is the same for every instant of this
    # minute: cached per minute (an ambiguous number's search costs thousands of zone checks,
    # and the pop-up asks it for the same few zone sets all day).
    minute = now.replace(second=0, microsecond=0)
    return Verdict(
        False, reason, _next_open(tuple(zones), minute, calendar, schedule.key(), config)
    )


@lru_cache(maxsize=4096)
def _next_open(
    zones: tuple[str, ...],
    minute: dt.datetime,
    calendar: Calendar,
    schedule_key: tuple[tuple[int, tuple[Interval, ...]], ...],
    config: PolicyConfig,
) -> dt.datetime | None:
    """The first start after `minute` at which every zone is open together (within the
    horizon). A start is a whole minute, so "after the minute" equals "after now"."""
    schedule = Schedule(dict(schedule_key))
    candidates = sorted(
        {t for z in zones for t in _starts(z, minute, calendar, schedule, config) if t > minute}
    )
    for moment in candidates:
        if all(_check_zone(z, moment, calendar, schedule, config) is None for z in zones):
            return moment
    return None


def callable_zones(
    zones: Iterable[str],
    now: dt.datetime,
    calendar: Calendar,
    schedule: Schedule = NO_SCHEDULE,
    config: PolicyConfig = PolicyConfig(),  # noqa: B008
) -> frozenset[str]:
    """The zones (of `zones`) callable at `now`: the small set the SQL predicate uses."""
    return frozenset(z for z in zones if _check_zone(z, now, calendar, schedule, config) is None)
