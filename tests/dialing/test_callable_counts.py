"""`callable_counts` (migration 0009) stays exactly what a count over phone_numbers and
dnc_entries says: after loads, a rolled-back load, updates, deletes, DNC adds / expiry changes /
removals, writers racing each other, compaction, TRUNCATE; and the summary reads it."""

from __future__ import annotations

import datetime as dt
import random
import threading
from typing import Any

import psycopg
import pytest
from sqlalchemy.orm import Session

from models.bulk import RowChunk, load_numbers
from models.dialing import counts, eligibility
from models.dialing.policy import PolicyConfig

UTC = dt.UTC
NOW = dt.datetime(2026, 3, 4, 11, 30, tzinfo=UTC)
ZONES = ("Europe/Moscow", "Asia/Omsk", "Asia/Yekaterinburg", "Asia/Vladivostok", None)

# What the triggers must keep: the rebuild's own aggregation, computed afresh ('infinity' as
# text: Python's datetime has no infinity).
TRUTH = """
SELECT r.project_id, r.timezone, r.timezone_set_id, l.until::text, count(*)
FROM phone_numbers r LEFT JOIN (
    SELECT r.id, max(coalesce(d.expires_at, 'infinity')) AS until
    FROM dnc_entries d JOIN phone_numbers r ON r.phone_number = d.phone_number
     AND (d.project_id IS NULL OR d.project_id = r.project_id)
    GROUP BY r.id
) l ON l.id = r.id
GROUP BY 1, 2, 3, 4
"""
KEPT = """
SELECT project_id, timezone, timezone_set_id, listed_until::text, sum(numbers)
FROM callable_counts GROUP BY 1, 2, 3, 4 HAVING sum(numbers) <> 0
"""


def _state(conn: psycopg.Connection[Any], query: str) -> set[tuple[Any, ...]]:
    return {tuple(r) for r in conn.execute(query).fetchall()}


def assert_exact(conn: psycopg.Connection[Any]) -> None:
    kept, truth = _state(conn, KEPT), _state(conn, TRUTH)
    assert kept == truth, (sorted(kept - truth, key=str), sorted(truth - kept, key=str))


def _phones(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i:07d}" for i in range(n)]


def test_loads_updates_deletes_and_dnc_changes_keep_counts_exact(conn, factory) -> None:
    a, b = factory.project(), factory.project()
    conn.execute(
        "INSERT INTO dnc_entries (project_id, phone_number, reason) VALUES "
        "(NULL, '+79160000003', 'register'), (%s, '+79160000004', 'asked')",
        (a.id,),
    )
    load_numbers(conn, a.id, [RowChunk(_phones("+7916", 50))])
    load_numbers(conn, b.id, [RowChunk(_phones("+7916", 20))])
    assert_exact(conn)
    listed = conn.execute(
        "SELECT sum(numbers) FROM callable_counts WHERE project_id = %s "
        "AND listed_until IS NOT NULL",
        (a.id,),
    ).fetchone()
    assert listed == (2,)  # the global entry and the project's, each once
    conn.execute(
        "UPDATE phone_numbers SET timezone = 'Europe/Moscow' WHERE project_id = %s "
        "AND phone_number < '+79160000010'",
        (a.id,),
    )
    conn.execute("UPDATE phone_numbers SET project_id = %s WHERE phone_number = '+79160000040'"
                 " AND project_id = %s", (b.id, a.id))  # fmt: skip
    conn.execute("DELETE FROM phone_numbers WHERE phone_number > '+79160000045'")
    assert_exact(conn)
    # DNC: a later expiry, an expiry in the past, a new global entry, a removal.
    conn.execute(
        "UPDATE dnc_entries SET expires_at = %s WHERE phone_number = '+79160000004'",
        (NOW + dt.timedelta(days=1),),
    )
    conn.execute(
        "INSERT INTO dnc_entries (project_id, phone_number, reason, expires_at) "
        "VALUES (%s, '+79160000003', 'asked', %s)",
        (b.id, NOW - dt.timedelta(days=1)),
    )
    conn.execute(
        "INSERT INTO dnc_entries (project_id, phone_number, reason) "
        "SELECT NULL, phone_number, 'bulk' FROM phone_numbers WHERE phone_number LIKE '%%2'"
        " ON CONFLICT DO NOTHING"
    )
    conn.execute("DELETE FROM dnc_entries WHERE phone_number = '+79160000003'")
    assert_exact(conn)


def test_status_updates_add_no_delta(conn, factory) -> None:
    """The SoftPhone webhook and the dial queue update numbers all day: nothing to count."""
    project = factory.project()
    load_numbers(conn, project.id, [RowChunk(_phones("+7916", 10))])
    before = conn.execute("SELECT count(*) FROM callable_counts").fetchone()
    conn.execute("UPDATE phone_numbers SET status = 'in_progress', call_attempts = 1")
    assert conn.execute("SELECT count(*) FROM callable_counts").fetchone() == before


def test_rolled_back_load_leaves_counts_unchanged(conn, factory) -> None:
    project = factory.project()
    load_numbers(conn, project.id, [RowChunk(_phones("+7916", 10))])
    before = _state(conn, KEPT)
    with pytest.raises(RuntimeError), conn.transaction():
        load_numbers(conn, project.id, [RowChunk(_phones("+7913", 100))])
        assert _state(conn, KEPT) != before  # counted inside the transaction...
        raise RuntimeError("the caller fails after the load")
    assert _state(conn, KEPT) == before  # ...and gone with it
    assert_exact(conn)


def test_dnc_expiry_is_applied_by_the_reader(session: Session, conn, factory) -> None:
    project = factory.project()
    load_numbers(conn, project.id, [RowChunk(_phones("+7916", 5))])
    conn.execute(
        "INSERT INTO dnc_entries (project_id, phone_number, reason, expires_at) "
        "VALUES (%s, '+79160000001', 'asked', %s)",
        (project.id, NOW + dt.timedelta(hours=1)),
    )
    s = eligibility.project_summary(session, project.id, NOW, PolicyConfig())
    assert (s.total, s.dnc) == (5, 1)
    later = eligibility.project_summary(
        session, project.id, NOW + dt.timedelta(hours=2), PolicyConfig()
    )
    assert (later.total, later.dnc) == (5, 0)  # expired: no write needed


def test_repeatable_read_writers_are_refused(conn, factory, database_url) -> None:
    """At REPEATABLE READ the trigger's reads would miss what a racing writer committed."""
    project = factory.project()
    with psycopg.connect(database_url) as rr:
        rr.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with pytest.raises(psycopg.errors.RaiseException, match="REPEATABLE READ"):
            rr.execute(
                "INSERT INTO phone_numbers (project_id, phone_number) VALUES (%s, '+79160000001')",
                (project.id,),
            )


def test_truncate_of_the_dnc_list_rebuilds(conn, factory) -> None:
    project = factory.project()
    load_numbers(conn, project.id, [RowChunk(_phones("+7916", 5))])
    conn.execute("INSERT INTO dnc_entries (phone_number, reason) VALUES ('+79160000001', 'x')")
    conn.execute("TRUNCATE dnc_entries")
    assert_exact(conn)


def test_compaction_is_exact_and_the_summary_compacts(session: Session, conn, factory) -> None:
    project = factory.project()
    for i in range(30):
        load_numbers(conn, project.id, [RowChunk(_phones(f"+79{10 + i}", 3))])
        conn.execute(
            "UPDATE phone_numbers SET timezone = %s WHERE project_id = %s AND id %% 3 = %s",
            (ZONES[i % len(ZONES)], project.id, i % 3),
        )
    rows = conn.execute("SELECT count(*) FROM callable_counts").fetchone()[0]
    counts.compact(session, project.id)
    assert conn.execute("SELECT count(*) FROM callable_counts").fetchone()[0] < rows
    assert_exact(conn)
    # Past COMPACT_ABOVE rows the summary compacts by itself.
    old, counts.COMPACT_ABOVE = counts.COMPACT_ABOVE, 1
    try:
        load_numbers(conn, project.id, [RowChunk(_phones("+7999", 3))])
        eligibility.project_summary(session, project.id, NOW, PolicyConfig())
    finally:
        counts.COMPACT_ABOVE = old
    keys = len(_state(conn, KEPT))
    assert conn.execute("SELECT count(*) FROM callable_counts").fetchone()[0] == keys
    assert_exact(conn)


def test_racing_writers_keep_counts_exact(conn, factory, database_url) -> None:
    """Loads, zone updates, deletes, moves, DNC adds / expiry changes / removals (global and per
    project) and compactions, in five connections at once: the kept counts equal a count
    afterwards."""
    projects = [factory.project().id for _ in range(2)]
    pool = _phones("+7916", 400)  # overlapping numbers: DNC entries reach loaded rows
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            with psycopg.connect(database_url, autocommit=True) as c:
                for _ in range(25):
                    pid = rng.choice(projects)
                    op = rng.randrange(7)
                    try:
                        if op == 0:
                            load_numbers(c, pid, [RowChunk(rng.sample(pool, 60))])
                        elif op == 1:
                            c.execute(
                                "UPDATE phone_numbers SET timezone = %s, timezone_set_id = NULL "
                                "WHERE project_id = %s AND id %% 5 = %s",
                                (rng.choice(["Europe/Moscow", "Asia/Omsk", None]), pid,
                                 rng.randrange(5)),
                            )  # fmt: skip
                        elif op == 2:
                            c.execute(
                                "DELETE FROM phone_numbers WHERE project_id = %s AND id %% 7 = %s",
                                (pid, rng.randrange(7)),
                            )
                        elif op == 3:
                            scope = rng.choice([None, pid])
                            until = rng.choice([None, NOW, NOW + dt.timedelta(days=3)])
                            c.execute(
                                "INSERT INTO dnc_entries (project_id, phone_number, reason, "
                                "expires_at) SELECT %s, unnest(%s::text[]), 'race', %s "
                                "ON CONFLICT ON CONSTRAINT uq_dnc_entries_phone_project DO UPDATE "
                                "SET expires_at = EXCLUDED.expires_at",
                                (scope, rng.sample(pool, 15), until),
                            )
                        elif op == 4:
                            c.execute(
                                "DELETE FROM dnc_entries WHERE id %% 4 = %s", (rng.randrange(4),)
                            )
                        elif op == 5:
                            c.execute(
                                "UPDATE phone_numbers SET project_id = %s WHERE id IN ("
                                "SELECT id FROM phone_numbers WHERE project_id <> %s AND NOT "
                                "EXISTS (SELECT 1 FROM phone_numbers o WHERE o.project_id = %s "
                                "AND o.phone_number = phone_numbers.phone_number) LIMIT 3)",
                                (pid, pid, pid),
                            )
                        else:
                            with Session(bind=_engine(database_url)) as s:
                                counts.compact(s, pid)
                    except psycopg.errors.UniqueViolation:
                        pass  # two movers raced for one number: that statement changed nothing
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert conn.execute("SELECT count(*) FROM phone_numbers").fetchone()[0] > 0
    assert conn.execute("SELECT count(*) FROM dnc_entries").fetchone()[0] > 0
    assert_exact(conn)


_ENGINES: dict[str, Any] = {}


def _engine(url: str) -> Any:
    from models.db import make_engine

    if url not in _ENGINES:
        _ENGINES[url] = make_engine(url, pool_size=2)
    return _ENGINES[url]


def test_memoised_group_verdict_is_evaluate_itself() -> None:
    """The summary's per-minute memo of policy.evaluate gives evaluate's answer at any instant,
    around a window's opening and closing to the second, for single, ambiguous and unknown."""
    from models.dialing import policy

    cal = policy.Calendar(holidays=frozenset({dt.date(2026, 3, 9)}))
    sched = policy.Schedule.from_rows([(2, dt.time(9), dt.time(17, 30))])
    groups = [("Europe/Moscow",), ("Asia/Yakutsk", "Asia/Srednekolymsk"), None, ("Asia/Omsk",)]
    base = dt.datetime(2026, 3, 4, 5, 0, tzinfo=UTC)  # Moscow 08:00
    instants = [base + dt.timedelta(seconds=s) for s in (-61, -60, -1, 0, 1, 59, 60, 61)]
    instants += [base + dt.timedelta(hours=h, seconds=0.5) for h in range(0, 48, 5)]
    for now in instants:
        for zones in groups:
            for schedule in (policy.NO_SCHEDULE, sched):
                got = eligibility._group_verdict(zones, now, cal, schedule, PolicyConfig())
                assert got == policy.evaluate(zones, now, cal, schedule, PolicyConfig()), (
                    zones, now,
                )  # fmt: skip
