"""The callable_now predicate against a real database, with a fixed clock: zones, an
ambiguous set (intersection only), unknown zones, holidays, project schedules and do-not-call
entries (scope and expiry); and the project summary."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest
from sqlalchemy import select

from models.dialing import eligibility
from models.dialing.policy import PolicyConfig
from models.dialing.zonesets import ensure_sets, normalised, set_id
from models.number_filters import FilterError, NumberFilters, number_conditions, with_callable
from models.tables import DncEntry, Holiday, PhoneNumber

UTC = dt.UTC
YAKUTIA = normalised(("Asia/Yakutsk", "Asia/Khandyga", "Asia/Ust-Nera", "Asia/Srednekolymsk"))
# Wednesday 2026-03-04 11:30 UTC: Moscow 14:30, Novosibirsk 18:30, Yakutsk 20:30,
# Srednekolymsk 22:30 (closed), New York 06:30 (closed).
WED_1130 = dt.datetime(2026, 3, 4, 11, 30, tzinfo=UTC)


@pytest.fixture
def numbers(factory, session, database_url):  # type: ignore[no-untyped-def]
    project = factory.project()
    with psycopg.connect(database_url, autocommit=True) as conn:
        ensure_sets(conn, {set_id(YAKUTIA): YAKUTIA})
    rows = {
        "msk": factory.number(project, "+79160000001", timezone="Europe/Moscow",
                              timezone_source="registry"),
        "nsk": factory.number(project, "+79130000001", timezone="Asia/Novosibirsk",
                              timezone_source="registry"),
        "ny": factory.number(project, "+13125550001", timezone="America/New_York",
                             timezone_source="libphonenumber"),
        "yak": factory.number(project, "+79140000001", timezone_source="ambiguous",
                              timezone_set_id=set_id(YAKUTIA)),
        "unknown": factory.number(project, "+79990000001", timezone_source="unknown"),
        "unresolved": factory.number(project, "+79990000002"),
    }  # fmt: skip
    return project, rows


def _callable(session, project_id: int, now: dt.datetime, value: bool = True) -> set[int]:  # type: ignore[no-untyped-def]
    f = with_callable(session, NumberFilters(project_id=project_id, callable_now=value), now=now)
    return set(session.scalars(select(PhoneNumber.id).where(*number_conditions(f))))


def test_zones_ambiguous_and_unknown(session, numbers) -> None:
    project, n = numbers
    assert _callable(session, project.id, WED_1130) == {n["msk"].id, n["nsk"].id}
    assert _callable(session, project.id, WED_1130, False) == {
        n["ny"].id, n["yak"].id, n["unknown"].id, n["unresolved"].id,
    }  # fmt: skip
    # 10:30 UTC: Srednekolymsk 21:30, so the whole Yakutia set is open.
    assert n["yak"].id in _callable(session, project.id, WED_1130 - dt.timedelta(hours=1))
    # Unknown zones as Moscow (NUMBASE_DIALING_UNKNOWN_ZONE=Europe/Moscow).
    pred = eligibility.callable_condition(
        session, WED_1130, [project.id], PolicyConfig(unknown_zone="Europe/Moscow")
    )
    got = set(session.scalars(select(PhoneNumber.id).where(pred)))
    assert got == {n["msk"].id, n["nsk"].id, n["unknown"].id, n["unresolved"].id}


def test_holiday_and_schedule_close_zones(session, factory, numbers) -> None:
    project, n = numbers
    session.add(Holiday(day=dt.date(2026, 3, 4), name="test holiday"))
    session.commit()
    # A holiday: 09-20. Moscow 14:30 open, Novosibirsk 18:30 open; at 13:30 UTC Nsk is 20:30.
    later = WED_1130 + dt.timedelta(hours=2)
    assert _callable(session, project.id, later) == {n["msk"].id}
    session.query(Holiday).delete()
    session.commit()
    factory.schedule(project, weekday=2, start="09:00", end="15:00")  # Wednesday only
    assert _callable(session, project.id, WED_1130) == {n["msk"].id}  # Nsk 18:30 > 15:00
    other = factory.project()
    factory.number(other, "+79160000009", timezone="Europe/Moscow", timezone_source="registry")
    # A project without a schedule is not restricted by another project's.
    assert len(_callable(session, other.id, WED_1130)) == 1


def test_dnc_scope_and_expiry(session, factory, numbers) -> None:
    project, n = numbers
    other = factory.project()
    twin = factory.number(other, "+79160000001", timezone="Europe/Moscow",
                          timezone_source="registry")  # fmt: skip
    # Listed for the other project only: still callable here.
    session.add(DncEntry(project_id=other.id, phone_number="+79160000001", reason="asked"))
    session.commit()
    assert n["msk"].id in _callable(session, project.id, WED_1130)
    assert twin.id not in _callable(session, other.id, WED_1130)
    # A global entry covers every project; an expired one covers nothing.
    session.add(DncEntry(project_id=None, phone_number="+79130000001", reason="regulator",
                         expires_at=WED_1130 + dt.timedelta(minutes=1)))  # fmt: skip
    session.add(DncEntry(project_id=None, phone_number="+79160000001", reason="old",
                         expires_at=WED_1130 - dt.timedelta(minutes=1)))  # fmt: skip
    session.commit()
    assert _callable(session, project.id, WED_1130) == {n["msk"].id}
    assert n["nsk"].id in _callable(session, project.id, WED_1130 + dt.timedelta(minutes=2))
    assert n["nsk"].id in _callable(session, project.id, WED_1130, False)


def test_callable_now_without_a_snapshot_is_refused() -> None:
    with pytest.raises(FilterError):
        number_conditions(NumberFilters(callable_now=True))
    assert NumberFilters.from_params({"callable_now": "false"}).callable_now is False
    for bad in ("maybe", "2", "yes please"):
        with pytest.raises(FilterError) as err:
            NumberFilters.from_params({"callable_now": bad})
        assert err.value.field == "callable_now"


def test_project_summary(session, numbers) -> None:
    project, n = numbers
    session.add(DncEntry(project_id=project.id, phone_number="+79160000001", reason="asked"))
    session.commit()
    s = eligibility.project_summary(session, project.id, WED_1130, PolicyConfig())
    assert (s.total, s.callable_now, s.dnc) == (6, 1, 1)
    by_zone = {(z.timezone, tuple(z.candidates or ())): z for z in s.zones}
    assert by_zone[("Asia/Novosibirsk", ())].callable_now
    yak = by_zone[(None, YAKUTIA)]
    assert (yak.callable_now, yak.next_window_opens) == (
        False, dt.datetime(2026, 3, 4, 23, tzinfo=UTC),
    )  # fmt: skip
    ny = by_zone[("America/New_York", ())]
    assert ny.next_window_opens == dt.datetime(2026, 3, 4, 13, tzinfo=UTC)  # 08:00 EST
    unknown = by_zone[(None, ())]
    assert (unknown.numbers, unknown.reason) == (2, "unknown_timezone")


def test_project_summary_counts_each_listed_number_once(session, numbers, factory) -> None:
    """Global + project entries for one number count it once; an expired entry, another
    project's entry and another project's numbers count nothing; a zone whose every number
    is listed leaves the zones (its numbers are in `dnc`)."""
    project, n = numbers
    other = factory.project()
    factory.number(other, "+79160000001", timezone="Europe/Moscow", timezone_source="registry")
    session.add_all([
        DncEntry(project_id=project.id, phone_number="+79130000001", reason="asked"),
        DncEntry(project_id=None, phone_number="+79130000001", reason="register"),
        DncEntry(project_id=None, phone_number="+79160000001", reason="register",
                 expires_at=WED_1130 - dt.timedelta(days=1)),
        DncEntry(project_id=other.id, phone_number="+13125550001", reason="asked"),
    ])  # fmt: skip
    session.commit()
    s = eligibility.project_summary(session, project.id, WED_1130, PolicyConfig())
    assert (s.total, s.dnc) == (6, 1)
    zones = {(z.timezone, tuple(z.candidates or ())): z.numbers for z in s.zones}
    assert ("Asia/Novosibirsk", ()) not in zones
    assert zones[("Europe/Moscow", ())] == 1 and zones[("America/New_York", ())] == 1
    assert sum(zones.values()) == 5
