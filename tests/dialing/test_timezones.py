"""Time-zone resolution in stages, at insert (the bulk loader) and for existing rows (the
back-fill, also through Dagster): registry ranges, multi-zone regions, geo precedence,
libphonenumber, stop and resume."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import phonenumbers
import psycopg
import pytest
from dagster import materialize
from phonenumbers import timezone as pn_timezone

from models.bulk import chunked, load_numbers
from models.dialing import backfill
from models.dialing.registry import load_registry
from models.dialing.resolve import (
    RangeIndex,
    _fragment_text,
    libphonenumber_zones,
    resolve_one,
    stage_fragments,
)
from models.dialing.zonesets import normalised, set_id
from tests.dialing.conftest import ABC_CP1251, DEF_UTF8

YAKUTIA = ["Asia/Khandyga", "Asia/Srednekolymsk", "Asia/Ust-Nera", "Asia/Yakutsk"]


def _stored(conn: psycopg.Connection[Any], project_id: int) -> dict[str, tuple[Any, ...]]:
    rows = conn.execute(
        "SELECT p.phone_number, p.timezone, p.timezone_source, s.zones, p.region, p.operator "
        "FROM phone_numbers p LEFT JOIN timezone_sets s ON s.id = p.timezone_set_id "
        "WHERE p.project_id = %s",
        (project_id,),
    ).fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


def test_bulk_load_resolves_each_stage(registry, factory) -> None:
    project = factory.project()
    result = load_numbers(
        registry, project.id,
        chunked(["8 916 234-56-78", "+7 914 271 23 45", "+79585012345", "+1 312 555 1234",
                 "+7 3952 123456", "+79991234567", "+7 411 2012345", "+7 916 234 56 78"]),
    )  # fmt: skip
    assert (result.inserted, result.duplicate_in_input) == (7, 1)
    got = _stored(registry, project.id)
    mts = 'ПАО "Мобильные ТелеСистемы"'
    # +7 9xx in a registry range: that range's region, operator and zone.
    assert got["+79162345678"] == (
        "Europe/Moscow", "registry", None, "Москва и Московская область", mts,
    )  # fmt: skip
    # A region spanning several zones: ambiguous, every candidate kept.
    assert got["+79142712345"] == (None, "ambiguous", YAKUTIA, "Республика Саха (Якутия)", mts)
    assert got["+74112012345"][1:3] == ("ambiguous", YAKUTIA)
    # A nationwide range: region and operator from the registry, zones from libphonenumber
    # (country-wide for a mobile: ambiguous).
    tz, source, zones, region, operator = got["+79585012345"]
    assert (tz, source, region) == (None, "ambiguous", "Российская Федерация")
    assert "Europe/Moscow" in zones and "Asia/Vladivostok" in zones
    # Outside the registry: libphonenumber when it gives one zone.
    assert got["+13125551234"] == ("America/Chicago", "libphonenumber", None, None, None)
    assert got["+739521234 56".replace(" ", "")][:2] == ("Asia/Irkutsk", "libphonenumber")
    assert got["+79991234567"][1] == "ambiguous"


def test_geo_zone_wins_over_the_registry_and_a_bogus_one_does_not(registry, factory) -> None:
    project = factory.project()
    omsk = factory.geo(timezone="Asia/Omsk")
    load_numbers(registry, project.id, chunked(["+79162345678", "+79142712345"]), geo_id=omsk.id)
    got = _stored(registry, project.id)
    assert got["+79162345678"][:3] == ("Asia/Omsk", "geo", None)
    assert got["+79162345678"][3] == "Москва и Московская область"  # region stays the registry's
    assert got["+79142712345"][:3] == ("Asia/Omsk", "geo", None)
    other = factory.project()
    for bogus in ("UTC+3", "../../etc/passwd", "", " Europe/Moscow", "Mars/Olympus"):
        geo = factory.geo(timezone=bogus)
        load_numbers(registry, other.id, chunked(["+79162345670"]), geo_id=geo.id)
        assert _stored(registry, other.id)["+79162345670"][:2] == ("Europe/Moscow", "registry")
        registry.execute("DELETE FROM phone_numbers WHERE project_id = %s", (other.id,))


def test_without_a_registry_numbers_still_get_libphonenumber_zones(conn, factory) -> None:
    project = factory.project()
    load_numbers(conn, project.id, chunked(["+79162345678", "+74951234567", "+442079460000"]))
    got = _stored(conn, project.id)
    assert got["+74951234567"][:2] == ("Europe/Moscow", "libphonenumber")
    assert got["+442079460000"][:2] == ("Europe/London", "libphonenumber")
    assert got["+79162345678"][1] == "ambiguous" and len(got["+79162345678"][2]) == 16


def test_fast_libphonenumber_lookup_agrees_with_libphonenumber() -> None:
    rng = random.Random(14)
    prefixes = "7 79 7495 7411 77 7701 7727 1 1312 44 4420 49 33 86 380 61 55 52 62 998 375 81 54"
    prefixes = prefixes.split() + ["91", "234"]
    checked = 0
    for _ in range(30_000):
        digits = rng.choice(prefixes)
        digits += "".join(rng.choice("0123456789") for _ in range(rng.randint(6, 13) - len(digits)))
        phone = "+" + digits
        try:
            parsed = phonenumbers.parse(phone)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164) != phone:
            continue  # stored numbers are canonical E.164 (models/phones.py)
        expected = tuple(z for z in pn_timezone.time_zones_for_number(parsed) if z != "Etc/Unknown")
        assert libphonenumber_zones(phone) == expected, phone
        checked += 1
    assert checked > 15_000


def _one_by_one(phone: str | None, index: RangeIndex) -> str:
    """The stage fields of one number, the plain way: the reference for the vectorised path."""
    if not phone:
        return ""
    national = int(phone[2:]) if phone[:2] == "+7" and len(phone) == 12 else -1
    hit = np.flatnonzero((index.starts <= national) & (national <= index.ends))
    i = int(hit[0]) if len(hit) and national >= 0 else None
    if i is not None and index.has_zones[i]:
        return index.fragments[i]
    zones = libphonenumber_zones(phone)
    zones = normalised(zones) if len(zones) > 1 else zones
    return _fragment_text(None if i is None else index.ids[i], zones, "libphonenumber")


def test_vectorised_stages_agree_with_one_number_at_a_time() -> None:
    """The chunk path (numbers grouped by libphonenumber's memo key, joined to range ids in
    numpy) gives every number what resolving it alone gives, for every kind of number."""
    rng = random.Random(5)
    zones = [("Europe/Moscow",), None, normalised(("Asia/Yakutsk", "Asia/Khandyga")), None]
    starts = np.array(sorted(rng.sample(range(10**9), 300)), dtype=np.int64) + 9 * 10**9
    starts = np.concatenate([starts, np.array([4_950_000_000, 7_010_000_000], dtype=np.int64)])
    starts.sort()
    ends = starts + np.array([rng.randrange(1, 10**6) for _ in starts], dtype=np.int64)
    ends = np.minimum(ends, np.append(starts[1:] - 1, ends[-1]))  # a registry never overlaps
    picked = [zones[i % 4] for i in range(len(starts))]
    index = RangeIndex(
        load_id=1, starts=starts, ends=ends, ids=tuple(range(100, 100 + len(starts))),
        fragments=tuple(_fragment_text(100 + i, z, "registry") for i, z in enumerate(picked)),
        has_zones=np.array([z is not None for z in picked]),
        sets={set_id(z): z for z in picked if z and len(z) > 1},
    )  # fmt: skip
    phones: list[str | None] = []
    for _ in range(20_000):
        kind = rng.random()
        if kind < 0.3:  # inside a range (zoned or not)
            k = rng.randrange(len(starts))
            phones.append(f"+7{rng.randint(int(starts[k]), int(ends[k])):010d}")
        elif kind < 0.6:
            phones.append(f"+79{rng.randrange(10**9):09d}")
        elif kind < 0.8:
            phones.append(f"+7{rng.choice('3486')}{rng.randrange(10**9):09d}")
        elif kind < 0.9:
            phones.append(f"+77{rng.choice('0127')}{rng.randrange(10**8):08d}")
        else:
            prefix = rng.choice(["+1312555", "+4420794", "+861381", "", None])
            phones.append(prefix and prefix + f"{rng.randrange(10**4):04d}")
    phones += ["", None, "+7", "+7495123456", "+749512345678", "+79991234567"]
    seen: dict[int, tuple[str, ...]] = {}
    got = stage_fragments(phones, index, None, seen)
    assert got == [_one_by_one(p, index) for p in phones]
    assert set(seen) >= set(index.sets)
    assert set_id(normalised(libphonenumber_zones("+79991234567"))) in seen
    assert stage_fragments([], index) == []
    assert stage_fragments(phones[:50], RangeIndex.empty()) == [
        _one_by_one(p, RangeIndex.empty()) for p in phones[:50]
    ]


def test_unknown_zone_when_nothing_knows() -> None:
    assert resolve_one("+80012345678", RangeIndex.empty()).source in {"unknown", "libphonenumber"}
    r = resolve_one("+99912345678", RangeIndex.empty())
    assert (r.timezone, r.source, r.candidates) == (None, "unknown", None)


def test_backfill_resolves_existing_rows_and_resumes_after_a_stop(conn, factory) -> None:
    project = factory.project()
    geo = factory.geo(timezone="Asia/Omsk")
    phones = [f"+7916{i:07d}" for i in range(7)] + ["+79142712345"]
    for p in phones:
        factory.number(project, p)
    factory.number(factory.project(), "+79160000001", geo_id=geo.id)
    assert backfill.needs_backfill(conn) is False  # nothing loaded, nothing open
    load_registry(conn, [DEF_UTF8, ABC_CP1251])
    assert backfill.needs_backfill(conn)
    job = backfill.open_backfill(conn)
    first = backfill.run_batch(conn, job, batch_size=3)
    assert (first.rows_seen, first.rows_changed, first.finished) == (3, 3, False)
    # "Killed" here: a new runner opens the same back-fill and continues after id 3.
    assert backfill.open_backfill(conn) == job
    done = 3
    while not (r := backfill.run_batch(conn, job, batch_size=3)).finished:
        done += r.rows_seen
    assert done == 9
    got = _stored(conn, project.id)
    assert all(got[p][:2] == ("Europe/Moscow", "registry") for p in phones[:7])
    assert got["+79142712345"][1:3] == ("ambiguous", YAKUTIA)
    geo_row = conn.execute(
        "SELECT timezone, timezone_source FROM phone_numbers WHERE geo_id = %s", (geo.id,)
    ).fetchone()
    assert geo_row == ("Asia/Omsk", "geo")
    assert not backfill.needs_backfill(conn)
    # A second pass over unchanged data writes nothing (no needless row versions).
    load_registry(conn, [DEF_UTF8, ABC_CP1251])
    again = backfill.open_backfill(conn)
    assert again != job
    assert backfill.run_batch(conn, again, batch_size=100).rows_changed == 0
    with pytest.raises(ValueError):
        backfill.run_batch(conn, again, batch_size=0)


def test_backfill_asset_stops_after_max_batches_and_the_next_run_resumes(
    conn, factory, postgres_resource
) -> None:
    from orchestration.assets.dialing import timezone_backfill

    project = factory.project()
    for i in range(5):
        factory.number(project, f"+7916{i:07d}")
    load_registry(conn, [DEF_UTF8])
    config = {"ops": {"timezone_backfill": {"config": {"batch_size": 2, "max_batches": 1}}}}
    res = materialize([timezone_backfill], resources={"postgres": postgres_resource},
                      run_config=config)  # fmt: skip
    meta = res.asset_materializations_for_node("timezone_backfill")[0].metadata
    assert meta["rows_seen"].value == 2 and meta["finished"].value is False
    assert conn.execute("SELECT count(timezone) FROM phone_numbers").fetchone()[0] == 2
    res = materialize([timezone_backfill], resources={"postgres": postgres_resource})
    meta = res.asset_materializations_for_node("timezone_backfill")[0].metadata
    assert meta["rows_seen"].value == 3 and meta["finished"].value is True
    assert conn.execute("SELECT count(timezone) FROM phone_numbers").fetchone()[0] == 5


def test_sensor_asks_after_a_registry_load_or_a_geo_change_and_not_twice(
    conn, factory, postgres_resource, session
) -> None:
    from dagster import RunRequest, build_sensor_context

    from orchestration.assets.dialing import registry_backfill_sensor

    def tick():  # type: ignore[no-untyped-def]
        # A context manager: the PostgreSQL resource has setup/teardown (the run liveness lock).
        with build_sensor_context(resources={"postgres": postgres_resource}) as context:
            return registry_backfill_sensor(context)

    factory.number(factory.project(), "+79160000001")
    assert not isinstance(tick(), RunRequest)  # nothing loaded yet
    load_registry(conn, [DEF_UTF8])
    first = tick()
    assert isinstance(first, RunRequest)
    job = backfill.open_backfill(conn)
    backfill.run_batch(conn, job, 100)
    half = tick()  # open, with progress: a new key (a dead run is retried)
    assert isinstance(half, RunRequest) and half.run_key != first.run_key
    while not backfill.run_batch(conn, job, 100).finished:
        pass
    assert not isinstance(tick(), RunRequest)
    geo = factory.geo(timezone="Asia/Omsk")
    after_geo = tick()
    assert isinstance(after_geo, RunRequest) and after_geo.run_key not in {
        first.run_key, half.run_key,
    }  # fmt: skip
    assert geo.id
