"""The calling policy with fixed clocks (`now` passed in): legal windows, holidays, project
schedules, each closing what the others allow; ambiguous numbers only in the intersection;
unknown zones; a DST change in a foreign zone."""

from __future__ import annotations

import datetime as dt

import pytest

from models.dialing import policy
from models.dialing.policy import Calendar, PolicyConfig, Schedule, evaluate, parse_hours

UTC = dt.UTC
MSK = "Europe/Moscow"  # UTC+3, no DST
YAKUTIA = ("Asia/Khandyga", "Asia/Srednekolymsk", "Asia/Ust-Nera", "Asia/Yakutsk")
NO_HOLIDAYS = Calendar()
WEEKDAYS_7_TO_12 = Schedule.from_rows((d, dt.time(7), dt.time(12)) for d in range(7))


def at(y: int, mo: int, d: int, h: int, mi: int = 0) -> dt.datetime:
    return dt.datetime(y, mo, d, h, mi, tzinfo=UTC)


def test_legal_window_on_a_working_day_in_local_time() -> None:
    # Wednesday 2026-03-04: 07:59 Moscow is 04:59 UTC.
    v = evaluate([MSK], at(2026, 3, 4, 4, 59), NO_HOLIDAYS)
    assert (v.callable, v.reason, v.next_open) == (False, "outside_legal_hours", at(2026, 3, 4, 5))
    assert evaluate([MSK], at(2026, 3, 4, 5), NO_HOLIDAYS).callable
    assert evaluate([MSK], at(2026, 3, 4, 18, 59), NO_HOLIDAYS).callable  # 21:59
    late = evaluate([MSK], at(2026, 3, 4, 19), NO_HOLIDAYS)  # 22:00: closed until 08:00
    assert (late.callable, late.next_open) == (False, at(2026, 3, 5, 5))


def test_weekend_window_and_a_moved_working_saturday() -> None:
    saturday_0830 = at(2026, 3, 7, 5, 30)
    v = evaluate([MSK], saturday_0830, NO_HOLIDAYS)
    assert (v.callable, v.reason, v.next_open) == (False, "outside_legal_hours", at(2026, 3, 7, 6))
    working = Calendar(working_days=frozenset({dt.date(2026, 3, 7)}))
    assert evaluate([MSK], saturday_0830, working).callable
    assert not evaluate([MSK], at(2026, 3, 7, 17, 30), NO_HOLIDAYS).callable  # 20:30 Saturday


def test_legal_window_holiday_and_schedule_each_close_what_the_others_allow() -> None:
    holiday = Calendar(holidays=frozenset({dt.date(2026, 3, 9)}))  # a Monday
    # 1. The legal window: Wednesday 07:30 Moscow; the schedule (07-12) and no holiday allow.
    v = evaluate([MSK], at(2026, 3, 4, 4, 30), holiday, WEEKDAYS_7_TO_12)
    assert (v.callable, v.reason) == (False, "outside_legal_hours")
    # 2. The holiday: Monday 08:30; a working day's window and the schedule would allow.
    v = evaluate([MSK], at(2026, 3, 9, 5, 30), holiday, WEEKDAYS_7_TO_12)
    assert (v.callable, v.reason, v.next_open) == (False, "holiday", at(2026, 3, 9, 6))
    assert evaluate([MSK], at(2026, 3, 9, 5, 30), NO_HOLIDAYS, WEEKDAYS_7_TO_12).callable
    # 3. The schedule: Wednesday 13:00; legal hours and the calendar allow.
    v = evaluate([MSK], at(2026, 3, 4, 10), holiday, WEEKDAYS_7_TO_12)
    assert (v.callable, v.reason) == (False, "outside_project_schedule")
    assert v.next_open == at(2026, 3, 5, 5)  # Thursday 08:00: legal 08-22 ∩ schedule 07-12
    assert evaluate([MSK], at(2026, 3, 4, 10), holiday).callable


def test_schedule_on_one_weekday_only_opens_next_week() -> None:
    mondays = Schedule.from_rows([(0, dt.time(10), dt.time(11))])
    v = evaluate([MSK], at(2026, 3, 3, 8), NO_HOLIDAYS, mondays)  # Tuesday 11:00
    assert v.next_open == at(2026, 3, 9, 7)  # Monday 10:00 Moscow


def test_ambiguous_is_callable_only_in_the_intersection_of_its_zones() -> None:
    # Workday 08-22 local: Yakutsk (+9) 23:00-13:00 UTC, Srednekolymsk (+11) 21:00-11:00 UTC.
    wednesday = (2026, 3, 4)
    assert evaluate(YAKUTIA, at(*wednesday, 10, 30), NO_HOLIDAYS).callable
    v = evaluate(YAKUTIA, at(*wednesday, 11, 30), NO_HOLIDAYS)  # Yakutsk 20:30 but Sred 22:30
    assert evaluate(["Asia/Yakutsk"], at(*wednesday, 11, 30), NO_HOLIDAYS).callable
    assert (v.callable, v.reason) == (False, "outside_legal_hours")
    assert v.next_open == at(*wednesday, 23)  # Yakutsk 08:00 (Sred 10:00)
    early = evaluate(YAKUTIA, at(*wednesday, 22, 30), NO_HOLIDAYS)  # Sred 09:30, Yakutsk 07:30
    assert not early.callable and early.next_open == at(*wednesday, 23)
    # Windows that never overlap: no next window rather than a guess.
    far = ("Pacific/Kiritimati", "Pacific/Pago_Pago")  # UTC+14 and UTC-11 (25 hours apart)
    v = evaluate(
        far,
        at(*wednesday, 12),
        NO_HOLIDAYS,
        config=PolicyConfig(workday=(480, 540), dayoff=(480, 540)),
    )
    assert (v.callable, v.next_open) == (False, None)


def test_unknown_zone_follows_the_configured_rule() -> None:
    wed_noon = at(2026, 3, 4, 9)
    v = evaluate([], wed_noon, NO_HOLIDAYS)
    assert (v.callable, v.reason, v.next_open) == (False, "unknown_timezone", None)
    assert evaluate(None, wed_noon, NO_HOLIDAYS, config=PolicyConfig(unknown_zone=MSK)).callable
    night = at(2026, 3, 4, 21)
    assert not evaluate([], night, NO_HOLIDAYS, config=PolicyConfig(unknown_zone=MSK)).callable


def test_a_dst_change_in_a_foreign_zone() -> None:
    ny = ["America/New_York"]  # DST starts Sunday 2026-03-08 02:00 local (EST -5 -> EDT -4)
    # The same UTC clock, a week apart: 12:30 UTC is 07:30 EST (closed), then 08:30 EDT (open).
    assert not evaluate(ny, at(2026, 3, 2, 12, 30), NO_HOLIDAYS).callable
    assert evaluate(ny, at(2026, 3, 9, 12, 30), NO_HOLIDAYS).callable
    assert evaluate(ny, at(2026, 3, 2, 12, 59), NO_HOLIDAYS).next_open == at(2026, 3, 2, 13)
    assert evaluate(ny, at(2026, 3, 9, 11, 59), NO_HOLIDAYS).next_open == at(2026, 3, 9, 12)
    # Saturday 20:30 EST, the night of the change: Sunday opens 09:00 EDT = 13:00 UTC, not 14:00.
    v = evaluate(ny, at(2026, 3, 8, 1, 30), NO_HOLIDAYS)
    assert (v.callable, v.next_open) == (False, at(2026, 3, 8, 13))
    # Autumn back (Sunday 2026-11-01 02:00 EDT -> 01:00 EST): Sunday opens 09:00 EST = 14:00 UTC.
    assert evaluate(ny, at(2026, 11, 1, 5), NO_HOLIDAYS).next_open == at(2026, 11, 1, 14)


def test_now_must_be_aware_and_hours_are_checked() -> None:
    with pytest.raises(ValueError):
        evaluate([MSK], dt.datetime(2026, 3, 4, 12), NO_HOLIDAYS)
    assert parse_hours("08:00-22:00") == (480, 1320)
    assert parse_hours("00:00-24:00") == (0, 1440)
    for bad in ("22:00-08:00", "8-22", "08:00", "08:60-09:00", "", "08:00-24:01", "aa:bb-cc:dd"):
        with pytest.raises(ValueError):
            parse_hours(bad)


def test_callable_zones_is_the_small_set_of_open_zones() -> None:
    zones = {"Europe/Moscow", "Asia/Vladivostok", "America/New_York", "Europe/Kaliningrad"}
    # Wednesday 19:30 UTC: Moscow 22:30 (closed), Kaliningrad 21:30, Vladivostok 05:30, NY 14:30.
    got = policy.callable_zones(zones, at(2026, 3, 4, 19, 30), NO_HOLIDAYS)
    assert got == {"Europe/Kaliningrad", "America/New_York"}
