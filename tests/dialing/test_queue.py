"""The dial queue at the data layer (models/dialing/queue.py): each eligibility rule alone
excludes a number, recycling per outcome and the attempt limit, the hand-out orders, expired
leases, and 50 holders leasing at once on separate connections."""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

import pytest
from sqlalchemy import Engine, select, text, update
from sqlalchemy.orm import Session

from models.db import make_engine
from models.dialing import queue, queue_rules
from models.dialing.policy import PolicyConfig
from models.dialing.queue_rules import OutcomeRule, Rules
from models.tables import DncEntry, PhoneNumber, Project, ProjectDialingRules

# Any hour is legal: these tests must not depend on when they run (the time rule has its own
# case: an unknown zone is never callable).
ALL_DAY = PolicyConfig(workday=(0, 1440), dayoff=(0, 1440))
MSK = {"timezone": "Europe/Moscow", "timezone_source": "registry"}
PARTS = ("not_final", "below_max", "retry_reached", "gap_ok", "not_dnc", "callable", "not_leased")


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def eligible_ids(
    session: Session, project: Project, rules: Rules = queue_rules.DEFAULTS
) -> set[int]:
    cond = queue.conditions(session, project, rules, now(), ALL_DAY)
    return set(
        session.scalars(
            select(PhoneNumber.id).where(PhoneNumber.project_id == project.id, cond.eligible())
        )
    )


def failing_parts(session: Session, project: Project, number_id: int) -> set[str]:
    cond = queue.conditions(session, project, queue_rules.DEFAULTS, now(), ALL_DAY)
    row = session.execute(
        select(*(getattr(cond, p).label(p) for p in PARTS)).where(PhoneNumber.id == number_id)
    ).one()
    return {p for p in PARTS if not getattr(row, p)}


def test_each_rule_alone_excludes_a_number_the_others_allow(session, factory) -> None:
    project = factory.project()
    t = now()
    n = {
        "ok": factory.number(project, **MSK),
        "expired_lease": factory.number(
            project, status="in_progress", leased_by="a", leased_until=t - dt.timedelta(seconds=1),
            **MSK,
        ),
        "success": factory.number(project, status="success", **MSK),
        "failed": factory.number(project, status="failed", **MSK),
        "exhausted": factory.number(project, call_attempts=5, status="no_answer", **MSK),
        "retry": factory.number(
            project, status="no_answer", next_attempt_at=t + dt.timedelta(hours=1), **MSK
        ),
        "gap": factory.number(
            project, status="no_answer", last_call_at=t - dt.timedelta(minutes=1), **MSK
        ),
        "dnc": factory.number(project, "+79169990099", **MSK),
        "unknown_zone": factory.number(project, timezone_source="unknown"),
        "leased": factory.number(
            project, status="in_progress", leased_by="b", leased_until=t + dt.timedelta(minutes=5),
            **MSK,
        ),
    }  # fmt: skip
    factory.session.add(DncEntry(project_id=None, phone_number="+79169990099", reason="asked"))
    factory.session.commit()

    assert eligible_ids(session, project) == {n["ok"].id, n["expired_lease"].id}
    expected = {
        "ok": set(), "expired_lease": set(), "success": {"not_final"}, "failed": {"not_final"},
        "exhausted": {"below_max"}, "retry": {"retry_reached"}, "gap": {"gap_ok"},
        "dnc": {"not_dnc"},
        "unknown_zone": {"callable"}, "leased": {"not_leased"},
    }  # fmt: skip
    for name, number in n.items():
        assert failing_parts(session, project, number.id) == expected[name], name

    # A paused (or deleted) project hands nothing out, whatever its numbers.
    project.status = "paused"
    session.commit()
    assert eligible_ids(session, project) == set()


def test_finer_outcomes_and_configurable_finality(session, factory) -> None:
    project = factory.project()
    busy = factory.number(project, status="no_answer", result_data={"outcome": "busy"}, **MSK)
    failed_busy = factory.number(project, status="failed", result_data={"outcome": "busy"}, **MSK)
    failed = factory.number(project, status="failed", **MSK)
    assert eligible_ids(session, project) == {busy.id, failed_busy.id}  # busy is not final
    rules = Rules(
        outcomes={**queue_rules.DEFAULT_OUTCOMES, "busy": OutcomeRule(True, 0),
                  "failed": OutcomeRule(False, 60)},
    )  # fmt: skip
    assert eligible_ids(session, project, rules) == {failed.id}


def _scheduled(session: Session, number_id: int) -> tuple[dt.datetime | None, Any]:
    session.expire_all()
    row = session.get(PhoneNumber, number_id)
    assert row is not None
    return row.next_attempt_at, row


def test_recycling_delay_per_outcome_min_gap_and_attempt_limit(session, factory) -> None:
    project = factory.project()
    custom = factory.project()
    session.add(
        ProjectDialingRules(
            project_id=custom.id, max_attempts=2, min_gap_seconds=7200,
            hand_out_order="priority_then_oldest",
            outcomes={"no_answer": {"final": False, "retry_seconds": 60},
                      "voicemail": {"final": True, "retry_seconds": 0}},
        )
    )  # fmt: skip
    session.commit()
    t = now()
    cases = {
        "no_answer": (project, {"status": "no_answer"}, 3600),
        "busy": (project, {"status": "no_answer", "result_data": {"outcome": "busy"}}, 900),
        "voicemail": (project, {"status": "no_answer", "result_data": {"outcome": "voicemail"}},
                      4 * 3600),
        "failed": (project, {"status": "failed"}, None),  # final by default: never due
        "success": (project, {"status": "success"}, None),
        # The project's own rule (60 s) is shorter than its minimum gap (2 h): the gap wins.
        "custom_gap": (custom, {"status": "no_answer", "last_call_at": t}, 7200),
        "custom_final_voicemail": (
            custom, {"status": "no_answer", "result_data": {"outcome": "voicemail"}}, None),
    }  # fmt: skip
    numbers = {k: factory.number(p, **kw, **MSK) for k, (p, kw, _) in cases.items()}
    queue.reschedule(session, [x.id for x in numbers.values()])
    session.commit()
    for name, (_, _, delay) in cases.items():
        at, _ = _scheduled(session, numbers[name].id)
        if delay is None:
            assert at is None, name
        else:
            assert at is not None, name
            assert abs((at - (t + dt.timedelta(seconds=delay))).total_seconds()) < 30, name

    # Attempt limit: the custom project's max is 2.
    below = factory.number(custom, call_attempts=1, **MSK)
    at_max = factory.number(custom, call_attempts=2, **MSK)
    rules = queue_rules.load(session, custom.id)
    assert rules.max_attempts == 2 and rules.stored
    ids = eligible_ids(session, custom, rules)
    assert below.id in ids and at_max.id not in ids


def test_orders_are_honoured(session, factory) -> None:
    project = factory.project()
    fresh_low = factory.number(project, **MSK)
    retry_low = factory.number(project, call_attempts=1, status="no_answer", **MSK)
    fresh_high = factory.number(project, priority=5, **MSK)
    retry_high = factory.number(project, call_attempts=2, status="no_answer", priority=5, **MSK)
    negative = factory.number(project, priority=-1, **MSK)

    def order(name: str) -> list[int]:
        rules = Rules(hand_out_order=name)
        got = queue.lease(
            session, project, holder=name, count=10, lease_seconds=60, now=now(),
            config=ALL_DAY, rules=rules,
        )  # fmt: skip
        session.rollback()  # look, do not keep
        return [g.id for g in got]

    assert order("priority_then_oldest") == [
        fresh_high.id, retry_high.id, fresh_low.id, retry_low.id, negative.id
    ]  # fmt: skip
    assert order("fresh_first") == [fresh_high.id, fresh_low.id, negative.id, retry_high.id,
                                    retry_low.id]  # fmt: skip
    assert order("retries_first") == [retry_high.id, retry_low.id, fresh_high.id, fresh_low.id,
                                      negative.id]  # fmt: skip


def test_expired_lease_comes_back_and_a_live_one_does_not(session, factory) -> None:
    project = factory.project()
    number = factory.number(project, **MSK)
    t = now()
    first = queue.lease(
        session, project, holder="a", count=1, lease_seconds=60, now=t - dt.timedelta(hours=1),
        config=ALL_DAY,
    )  # fmt: skip
    session.commit()
    assert [x.id for x in first] == [number.id]  # its lease ran out 59 minutes ago
    again = queue.lease(session, project, holder="b", count=1, lease_seconds=60, now=t,
                        config=ALL_DAY)  # fmt: skip
    session.commit()
    assert [x.id for x in again] == [number.id]
    assert queue.lease(session, project, holder="c", count=1, lease_seconds=60, now=t,
                       config=ALL_DAY) == []  # fmt: skip
    # "a" lost it: its release changes nothing; "b" gives it back unused.
    assert queue.release(session, project.id, holder="a", ids=[number.id], outcome=None,
                         now=t) == []  # fmt: skip
    assert queue.release(session, project.id, holder="b", ids=[number.id], outcome=None,
                         now=t) == [(number.id, "in_progress", "new")]  # fmt: skip
    session.commit()
    _, row = _scheduled(session, number.id)
    assert (row.status, row.leased_by, row.leased_until) == ("new", None, None)


def test_release_with_outcome_counts_the_attempt_and_schedules(session, factory) -> None:
    project = factory.project()
    number = factory.number(project, **MSK)
    t = now()
    queue.lease(session, project, holder="a", count=1, lease_seconds=60, now=t, config=ALL_DAY)
    out = queue.release(session, project.id, holder="a", ids=[number.id], outcome="busy", now=t)
    session.commit()
    assert out == [(number.id, "in_progress", "no_answer")]
    at, row = _scheduled(session, number.id)
    assert row.call_attempts == 1 and row.result_data == {"outcome": "busy"}
    assert at is not None and abs((at - t).total_seconds() - 900) < 30


def test_fifty_holders_at_once_never_share_a_number(db: Engine, database_url, factory) -> None:
    project = factory.project()
    eligible = {factory.number(project, **MSK).id for _ in range(150)}
    factory.number(project, status="success", **MSK)
    factory.number(project, call_attempts=9, status="no_answer", **MSK)
    engine = make_engine(database_url, pool_size=50)
    got: dict[str, list[int]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(50)

    def holder(name: str) -> None:
        mine: list[int] = []
        try:
            with Session(engine) as s:
                p = s.get(Project, project.id)
                start.wait()
                while True:
                    leased = queue.lease(s, p, holder=name, count=1, lease_seconds=300,
                                         now=now(), config=ALL_DAY)  # fmt: skip
                    s.commit()
                    if not leased:
                        break
                    mine.extend(x.id for x in leased)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        got[name] = mine

    threads = [threading.Thread(target=holder, args=(f"agent-{i}",)) for i in range(50)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    engine.dispose()
    assert not errors, errors
    handed = [i for ids in got.values() for i in ids]
    assert len(handed) == len(set(handed)), "a number went to two holders"
    assert set(handed) == eligible
    with Session(db) as s:  # and the table agrees with what each holder was told
        owners = dict(s.execute(select(PhoneNumber.id, PhoneNumber.leased_by).where(
            PhoneNumber.id.in_(eligible))).all())  # fmt: skip
    assert all(owners[i] == name for name, ids in got.items() for i in ids)


def test_a_final_outcome_is_never_leased_even_with_an_old_schedule(session, factory) -> None:
    project = factory.project()
    t = now()
    number = factory.number(project, status="no_answer", next_attempt_at=t, **MSK)
    session.execute(update(PhoneNumber).where(PhoneNumber.id == number.id).values(status="success"))
    session.commit()
    assert eligible_ids(session, project) == set()


def test_a_lease_skips_rows_being_leased_instead_of_waiting(db: Engine, session, factory) -> None:
    project = factory.project()
    first = factory.number(project, priority=9, **MSK)
    second = factory.number(project, **MSK)
    with db.connect() as other:  # another holder's transaction, in flight on the first number
        other.execute(
            text("SELECT 1 FROM phone_numbers WHERE id = :id FOR NO KEY UPDATE"), {"id": first.id}
        )
        session.execute(text("SET LOCAL lock_timeout = '2s'"))  # a wait would fail, not hang
        got = queue.lease(session, project, holder="b", count=1, lease_seconds=60, now=now(),
                          config=ALL_DAY)  # fmt: skip
        session.commit()
        other.rollback()
    assert [g.id for g in got] == [second.id]


def test_import_priority_column_sets_priority_and_rejects_bad_cells(
    database_url, session, factory
) -> None:
    import psycopg

    from models.bulk import RowChunk, load_numbers

    project = factory.project()
    phones = ["+79161110001", "+79161110002", "+79161110003", "+79161110004", "+79161110005",
              "+79161110006", "+79161110007"]  # fmt: skip
    attrs = [{"priority": 5}, {"priority": " -7 "}, {"name": "no priority"},
             {"priority": "high"}, {"priority": 10**9}, {"priority": True},
             {"priority": 2.5}]  # fmt: skip
    with psycopg.connect(database_url) as conn:
        result = load_numbers(conn, project.id, [RowChunk(phones, None, attrs)])
    assert result.inserted == 3 and result.invalid == 4
    assert {r.line for r in result.rejects} == {4, 5, 6, 7}
    assert all(r.reason.startswith("priority:") for r in result.rejects)
    got = dict(session.execute(select(PhoneNumber.phone_number, PhoneNumber.priority)).all())
    assert got == {"+79161110001": 5, "+79161110002": -7, "+79161110003": 0}
    kept = session.scalar(
        select(PhoneNumber.attributes).where(PhoneNumber.phone_number == "+79161110002")
    )
    assert kept == {"priority": " -7 "}  # the cell as sent stays in attributes


def test_two_tiers_in_one_statement_with_fifty_holders(db: Engine, database_url, factory) -> None:
    """fresh_first: each lease is one statement whose second tier takes what the first left;
    50 holders asking for 3 at once, across the tier boundary, never share a number and get
    exactly the eligible set, each answer in the order's tiers."""
    project = factory.project()
    factory.session.add(ProjectDialingRules(project_id=project.id, max_attempts=5,
                        min_gap_seconds=0, hand_out_order="fresh_first", outcomes={}))  # fmt: skip
    factory.session.commit()
    fresh = {factory.number(project, **MSK).id for _ in range(70)}
    retries = {factory.number(project, call_attempts=1, status="no_answer", **MSK).id
               for _ in range(70)}  # fmt: skip
    rules = queue_rules.load(factory.session, project.id)
    engine = make_engine(database_url, pool_size=50)
    got: dict[str, list[list[int]]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(50)

    def holder(name: str) -> None:
        mine: list[list[int]] = []
        try:
            with engine.connect() as conn:
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")  # as the API
                start.wait()
                while leased := queue.lease(conn, project.id, holder=name, count=3,
                                            lease_seconds=300, now=now(), config=ALL_DAY,
                                            rules=rules, audit={"actor": "t"}):  # fmt: skip
                    mine.append([x.id for x in leased])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        got[name] = mine

    threads = [threading.Thread(target=holder, args=(f"agent-{i}",)) for i in range(50)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    engine.dispose()
    assert not errors, errors
    handed = [i for answers in got.values() for ids in answers for i in ids]
    assert len(handed) == len(set(handed)), "a number went to two holders"
    assert set(handed) == fresh | retries
    for answers in got.values():  # within one answer: fresh numbers before retries
        for ids in answers:
            kinds = [i in retries for i in ids]
            assert kinds == sorted(kinds), ids
    with Session(db) as s:  # one audit row per number handed out, written by the statement
        audited = s.scalars(text("SELECT entity_id FROM audit_log WHERE action = "
                                 "'dial_queue_lease' AND actor = 't'")).all()  # fmt: skip
    assert sorted(audited) == sorted(handed)


def test_the_lease_walk_tests_due_and_attempts_on_the_index(session, factory) -> None:
    """Leased and waiting numbers pile up at the front of a worked project's walk; the walk
    must pass over them on the index entry (Index Cond), not fetch each row (Filter). The
    statement is the API's: compiled for the minute by the plan (models/dialing/queue_plan.py)."""
    from models.dialing import queue_plan

    project = factory.project()
    factory.number(project, **MSK)
    t = now()
    conn = session.connection()
    plan = queue_plan.read_plan(conn, project.id, t, 5)
    sql = plan.minute(t, ALL_DAY, conn.dialect).lease_sql
    params = {"dq_now": t, "dq_until": t, "dq_count": 1, "dq_holder": "x", "dq_user_id": None,
              "dq_actor": "t"}  # fmt: skip
    # Fresh statistics: after the rest of the suite the table's are other tests' (the full CI
    # run planned this walk on another index).
    conn.exec_driver_sql("ANALYZE phone_numbers")
    conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
    lines = [r[0] for r in conn.exec_driver_sql("EXPLAIN " + sql, params)]
    session.rollback()
    found = [i for i, line in enumerate(lines) if "using ix_phone_numbers_dial_queue" in line]
    if not found:  # a one-row table: the planner may take any index; the aim is at scale
        pytest.skip("planner chose another index for a one-row table:\n" + "\n".join(lines))
    walk = found[0]
    cond = lines[walk + 1]
    assert "GREATEST(next_attempt_at, leased_until)" in cond and "call_attempts <" in cond, lines


def test_numbers_list_eligible_now_is_the_queue_predicate(session, factory) -> None:
    """`eligible_now` on the numbers list (models/number_filters.py) is the lease's predicate:
    per project's rules, across projects, and nothing of a paused project."""
    from models.number_filters import NumberFilters, number_conditions, with_callable

    t = dt.datetime(2026, 12, 2, 9, 0, tzinfo=dt.UTC)  # 12:00 in Moscow on a Wednesday
    strict = factory.project()
    factory.session.add(ProjectDialingRules(project_id=strict.id, max_attempts=1,
                        min_gap_seconds=0, hand_out_order="fresh_first", outcomes={}))  # fmt: skip
    loose, paused = factory.project(), factory.project(status="paused")
    factory.session.commit()
    ok = {factory.number(p, **MSK).id for p in (strict, loose)}
    ok.add(factory.number(loose, call_attempts=1, status="no_answer", **MSK).id)
    not_ok = {
        factory.number(strict, call_attempts=1, status="no_answer", **MSK).id,  # its max is 1
        factory.number(loose, status="in_progress", leased_by="a",
                       leased_until=t + dt.timedelta(minutes=1), **MSK).id,
        factory.number(loose, status="no_answer", next_attempt_at=t + dt.timedelta(hours=1),
                       **MSK).id,
        factory.number(loose, timezone_source="unknown").id,
        factory.number(paused, **MSK).id,
    }  # fmt: skip

    def listed(value: bool, **scope: Any) -> set[int]:
        f = with_callable(session, NumberFilters(eligible_now=value, **scope), now=t)
        return set(session.scalars(select(PhoneNumber.id).where(*number_conditions(f))))

    assert listed(True) == ok and listed(False) == not_ok
    assert listed(True, project_ids=(strict.id, paused.id)) == ok & listed(
        True, project_id=strict.id
    )
    for p in (strict, loose, paused):  # the same set as the lease's own predicate
        cond = queue.conditions(session, p, queue_rules.load(session, p.id), t, PolicyConfig())
        own = set(session.scalars(select(PhoneNumber.id).where(
            PhoneNumber.project_id == p.id, cond.eligible())))  # fmt: skip
        assert own == listed(True, project_id=p.id)


def test_plan_cache_staleness_is_bounded_and_invalidate_drops_it(session, factory) -> None:
    """A lease plan (rules + time inputs) is reused for `ttl` seconds, then re-read; the
    minute's compiled statement survives a re-read that finds the same inputs."""
    from models.dialing import queue_plan

    project = factory.project()
    conn, t = session.connection(), now()
    cache = queue_plan.PlanCache(60)
    first = cache.get(conn, project.id, t)
    sql = first.minute(t, ALL_DAY, conn.dialect).lease_sql
    factory.session.add(ProjectDialingRules(project_id=project.id, max_attempts=2,
                        min_gap_seconds=0, outcomes={}))  # fmt: skip
    factory.session.commit()
    conn = session.connection()
    assert cache.get(conn, project.id, t).rules.max_attempts == 5  # within ttl: the old read
    cache.invalidate()
    assert cache.get(conn, project.id, t).rules.max_attempts == 2
    assert queue_plan.PlanCache(0).get(conn, project.id, t).rules.max_attempts == 2
    short = queue_plan.PlanCache(0.01)
    a = short.get(conn, project.id, t)
    sql = a.minute(t, ALL_DAY, conn.dialect).lease_sql
    time.sleep(0.02)
    b = short.get(conn, project.id, t)  # expired, re-read, same inputs: same compiled minute
    assert b is not a and b.minute(t, ALL_DAY, conn.dialect).lease_sql is sql
