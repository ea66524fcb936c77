"""The dial queue over HTTP: dialing rules (audited, validated), lease/release by a manager and by
the SoftPhone service key, scope, the webhook ending a lease, queue state, the admin reset, and
50 concurrent lease calls through a real socket."""

from __future__ import annotations

import datetime as dt
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import select, update

from models.settings import Settings, load_settings
from models.tables import AuditLog, DncEntry, PhoneNumber, Project
from tests.api.conftest import TEST_SETTINGS
from tests.api.test_softphone_webhook import ev, post

MSK = {"timezone": "Europe/Moscow", "timezone_source": "registry"}
KEY = {"X-API-Key": TEST_SETTINGS["softphone_api_key"]}


@pytest.fixture
def settings(database_url: str) -> Settings:
    # Every hour legal, so these tests hold whenever they run (time rules: tests/dialing/).
    return load_settings(
        database_url=database_url,
        dialing_workday_hours="00:00-24:00",
        dialing_dayoff_hours="00:00-24:00",
        dial_queue_state_cache_seconds=0,  # each call counts (the cache has its own test)
        **TEST_SETTINGS,
    )


def rules_url(pid: int) -> str:
    return f"/api/projects/{pid}/dialing-rules/"


def q(pid: int, tail: str = "") -> str:
    return f"/api/projects/{pid}/dial-queue/{tail}"


def test_rules_defaults_put_patch_audit_and_validation(client, manager, other_manager, factory,
                                                       session) -> None:  # fmt: skip
    project = factory.project(members=[manager.user])
    got = client.get(rules_url(project.id), headers=manager.headers)
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["is_default"] and body["max_attempts"] == 5
    assert body["outcomes"]["no_answer"] == {"final": False, "retry_seconds": 3600}
    assert body["outcomes"]["failed"]["final"] is True

    put = client.put(rules_url(project.id), headers=manager.headers, json={
        "max_attempts": 3, "min_gap_seconds": 60, "hand_out_order": "fresh_first",
        "outcomes": {"busy": {"final": False, "retry_seconds": 120}},
    })  # fmt: skip
    assert put.status_code == 200, put.text
    assert put.json()["outcomes"]["busy"]["retry_seconds"] == 120
    assert put.json()["outcomes"]["voicemail"]["retry_seconds"] == 4 * 3600  # default kept
    patch = client.patch(rules_url(project.id), headers=manager.headers,
                         json={"outcomes": {"voicemail": {"final": True}}})  # fmt: skip
    assert patch.status_code == 200, patch.text
    out = patch.json()
    assert not out["is_default"] and out["max_attempts"] == 3
    assert out["outcomes"]["voicemail"] == {"final": True, "retry_seconds": 4 * 3600}
    rows = session.scalars(
        select(AuditLog).where(AuditLog.entity_type == "project_dialing_rules")
        .order_by(AuditLog.id)
    ).all()  # fmt: skip
    assert [r.action for r in rows] == ["create", "update"]
    assert rows[1].changes["outcomes"][1]["voicemail"]["final"] is True

    for bad, field in [
        ({"max_attempts": 0}, "max_attempts"),
        ({"hand_out_order": "random"}, "hand_out_order"),
        ({"outcomes": {"success": {"final": False}}}, "outcomes"),
        ({"outcomes": {"busy": {"retry_seconds": -1}}}, "outcomes"),
        ({"min_gap_seconds": "soon"}, "min_gap_seconds"),
        ({"surprise": 1}, "surprise"),
    ]:
        resp = client.patch(rules_url(project.id), headers=manager.headers, json=bad)
        assert resp.status_code == 400, (bad, resp.text)
        assert any(field in k for k in resp.json()), resp.json()
    assert client.get(rules_url(project.id), headers=manager.headers).json() == out  # unchanged
    full = {"max_attempts": 9, "min_gap_seconds": 0, "hand_out_order": "fresh_first",
            "outcomes": {}}  # fmt: skip
    for method in ("get", "put", "patch"):
        kw: dict[str, Any] = {} if method == "get" else {"json": full}
        resp = getattr(client, method)(rules_url(project.id), headers=other_manager.headers, **kw)
        assert resp.status_code == 404, (method, resp.text)


def test_manager_and_service_key_lease_release_and_scope(client, manager, other_manager,
                                                         factory, session) -> None:  # fmt: skip
    project = factory.project(members=[manager.user])
    other = factory.project(members=[other_manager.user])
    a = factory.number(project, priority=1, **MSK)
    b = factory.number(project, **MSK)
    factory.number(other, **MSK)

    lease = client.post(q(project.id, "lease/"), headers=manager.headers,
                        json={"count": 1, "holder": "agent-1", "lease_seconds": 60})  # fmt: skip
    assert lease.status_code == 200, lease.text
    assert [n["id"] for n in lease.json()["numbers"]] == [a.id]  # higher priority first
    by_key = client.post(q(project.id, "lease/"), headers=KEY,
                         json={"count": 5, "holder": "dialer-7"})  # fmt: skip
    assert by_key.status_code == 200, by_key.text
    assert [n["id"] for n in by_key.json()["numbers"]] == [b.id]
    session.expire_all()
    assert session.get(PhoneNumber, b.id).leased_by == "dialer-7"  # type: ignore[union-attr]
    assert session.get(PhoneNumber, b.id).status == "in_progress"  # type: ignore[union-attr]

    # Another project's manager: not found, by every route; nothing leased or released.
    for tail, body in [("lease/", {"holder": "x"}), ("release/", {"holder": "agent-1",
                       "ids": [a.id]}), ("", None)]:  # fmt: skip
        if body is None:
            resp = client.get(q(project.id), headers=other_manager.headers)
        else:
            resp = client.post(q(project.id, tail), headers=other_manager.headers, json=body)
        assert resp.status_code == 404, (tail, resp.text)
    assert client.post(q(project.id, "lease/"), json={"holder": "x"}).status_code == 401
    wrong = client.post(q(project.id, "lease/"), headers={"X-API-Key": "w" * 32},
                        json={"holder": "x"})  # fmt: skip
    assert wrong.status_code == 401
    for bad in [{"holder": ""}, {"holder": "a\x00b"}, {"holder": "x", "count": 0},
                {"holder": "x", "count": 101}, {"holder": "x", "lease_seconds": 1},
                {"holder": "h" * 151}]:  # fmt: skip
        resp = client.post(q(project.id, "lease/"), headers=manager.headers, json=bad)
        assert resp.status_code == 400, (bad, resp.text)
    assert client.post(q(999999, "lease/"), headers=KEY, json={"holder": "x"}).status_code == 404
    for ids in ([], [0], [2**63], ["one"], [1] * 1001):
        resp = client.post(q(project.id, "release/"), headers=manager.headers,
                           json={"holder": "agent-1", "ids": ids})  # fmt: skip
        assert resp.status_code == 400 and "ids" in " ".join(resp.json()), (ids, resp.text)

    # Release: only the holder's own lease; the other id is reported, untouched.
    rel = client.post(
        q(project.id, "release/"),
        headers=manager.headers,
        json={"holder": "agent-1", "ids": [a.id, b.id], "outcome": "voicemail"},
    )
    assert rel.status_code == 200, rel.text
    assert rel.json() == {"released": [{"id": a.id, "status": "no_answer"}], "not_held": [b.id]}
    session.expire_all()
    na = session.get(PhoneNumber, a.id)
    assert na is not None and na.leased_by is None and na.call_attempts == 1
    assert na.next_attempt_at is not None and na.result_data == {"outcome": "voicemail"}
    actions = session.scalars(
        select(AuditLog.action).where(AuditLog.entity_id == a.id,
                                      AuditLog.entity_type == "phone_number")
    ).all()  # fmt: skip
    assert sorted(actions) == ["dial_queue_lease", "dial_queue_release"]


def test_webhook_result_ends_the_lease_and_schedules_the_retry(client, manager, factory,
                                                               session) -> None:  # fmt: skip
    project = factory.project(members=[manager.user])
    number = factory.number(project, **MSK)
    leased = client.post(q(project.id, "lease/"), headers=manager.headers, json={"holder": "a"})
    assert [n["id"] for n in leased.json()["numbers"]] == [number.id]
    t = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    resp = post(client, [
        ev("call_started", number.phone_number, t, call_id="c1"),
        ev("call_ended", number.phone_number, t + dt.timedelta(seconds=1), call_id="c1"),
        ev("call_result", number.phone_number, t + dt.timedelta(seconds=2), call_id="c1",
           status="no_answer", result_data={"outcome": "busy"}),
    ])  # fmt: skip
    assert resp.status_code == 200, resp.text
    session.expire_all()
    n = session.get(PhoneNumber, number.id)
    assert n is not None
    assert (n.status, n.call_attempts, n.leased_by, n.leased_until) == ("no_answer", 1, None, None)
    assert n.next_attempt_at is not None
    wait = (n.next_attempt_at - dt.datetime.now(dt.UTC)).total_seconds()
    assert 850 < wait <= 900  # busy: 15 minutes (default rules)
    state = client.get(q(project.id), headers=manager.headers).json()
    assert state["counts"]["waiting_retry"] == 1 and state["counts"]["eligible"] == 0
    assert state["next_retry_at"] is not None
    again = client.post(q(project.id, "lease/"), headers=manager.headers, json={"holder": "b"})
    assert again.json()["numbers"] == []


def test_patch_outcome_schedules_and_priority_is_settable(client, manager, factory,
                                                          session) -> None:  # fmt: skip
    project = factory.project(members=[manager.user])
    number = factory.number(
        project,
        status="in_progress",
        leased_by="a",
        leased_until=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5),
        **MSK,
    )
    resp = client.patch(f"/api/phone-numbers/{number.id}/", headers=manager.headers,
                        json={"status": "no_answer", "priority": 7})  # fmt: skip
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["priority"] == 7 and body["leased_by"] is None
    assert body["next_attempt_at"] is not None
    null = client.patch(f"/api/phone-numbers/{number.id}/", headers=manager.headers,
                        json={"priority": None})  # fmt: skip
    assert null.status_code == 400 and "priority" in null.json()


def test_bulk_status_update_schedules_and_ends_leases(client, manager, factory,
                                                     session) -> None:  # fmt: skip
    project = factory.project(members=[manager.user])
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    numbers = [factory.number(project, status="in_progress", leased_by="a", leased_until=soon,
                              **MSK) for _ in range(3)]  # fmt: skip
    resp = client.post("/api/phone-numbers/bulk-update/", headers=manager.headers, json={
        "ids": [n.id for n in numbers[:2]], "set": {"status": "no_answer"}})  # fmt: skip
    assert resp.status_code == 200 and resp.json()["updated"] == 2, resp.text
    session.expire_all()
    rows = [session.get(PhoneNumber, n.id) for n in numbers]
    assert [(r.leased_by, r.next_attempt_at is not None) for r in rows] == [  # type: ignore[union-attr]
        (None, True), (None, True), ("a", False)]  # fmt: skip


def test_queue_state_counts_add_up(client, manager, factory) -> None:
    project = factory.project(members=[manager.user])
    now = dt.datetime.now(dt.UTC)
    factory.number(project, **MSK)
    factory.number(project, status="success", **MSK)
    factory.number(project, call_attempts=5, status="no_answer", **MSK)
    factory.number(project, status="no_answer", next_attempt_at=now + dt.timedelta(minutes=30),
                   **MSK)  # fmt: skip
    factory.number(project, timezone_source="unknown")
    factory.number(project, "+79160000077", **MSK)
    factory.number(project, status="in_progress", leased_by="z",
                   leased_until=now + dt.timedelta(minutes=3), **MSK)  # fmt: skip
    factory.session.add(DncEntry(project_id=project.id, phone_number="+79160000077", reason="x"))
    factory.session.commit()
    resp = client.get(q(project.id), headers=KEY)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["total"] == 7 and sum(body["counts"].values()) == 7
    assert body["counts"] == {"eligible": 1, "final": 1, "exhausted": 1, "waiting_retry": 1,
                              "outside_hours": 1, "dnc": 1, "leased": 1, "paused": 0}  # fmt: skip
    assert body["retries_opening_next_hour"] == 1


def test_reset_dry_run_then_real_admins_only(client, admin, manager, factory, session) -> None:
    project = factory.project(members=[manager.user])
    done = factory.number(project, "+79160000011", call_attempts=5, status="no_answer", **MSK)
    other = factory.number(project, "+79250000011", call_attempts=6, status="no_answer", **MSK)
    factory.number(project, call_attempts=5, status="success", **MSK)  # final: not exhausted
    fresh = factory.number(project, **MSK)
    body = {"filter": {"phone_prefix": "+7916"}}
    assert client.post(q(project.id, "reset/"), headers=manager.headers,
                       json=body).status_code == 403  # fmt: skip
    dry = client.post(q(project.id, "reset/"), headers=admin.headers, json=body)
    assert dry.status_code == 200, dry.text
    assert dry.json() == {"project_id": project.id, "dry_run": True, "matched": 1}
    session.expire_all()
    assert session.get(PhoneNumber, done.id).call_attempts == 5  # type: ignore[union-attr]
    bad = client.post(q(project.id, "reset/"), headers=admin.headers,
                      json={"filter": {"phone_prefix": "7916%"}})  # fmt: skip
    assert bad.status_code == 400
    real = client.post(q(project.id, "reset/"), headers=admin.headers,
                       json={**body, "dry_run": False})  # fmt: skip
    assert real.json()["matched"] == 1
    session.expire_all()
    assert session.get(PhoneNumber, done.id).call_attempts == 0  # type: ignore[union-attr]
    assert session.get(PhoneNumber, other.id).call_attempts == 6  # type: ignore[union-attr]
    audit_rows = session.scalars(
        select(AuditLog).where(AuditLog.action == "dial_queue_reset")
    ).all()  # fmt: skip
    assert {(r.entity_type, r.entity_id) for r in audit_rows} == {
        ("phone_number", done.id), ("project", project.id)}  # fmt: skip
    number_row = next(r for r in audit_rows if r.entity_type == "phone_number")
    assert number_row.changes["call_attempts"] == [5, 0]
    leased = client.post(q(project.id, "lease/"), headers=admin.headers,
                         json={"holder": "a", "count": 10}).json()  # fmt: skip
    assert {n["id"] for n in leased["numbers"]} == {done.id, fresh.id}


def test_queue_state_cache_is_per_project_and_after_the_scope_check(
    database_url, db, factory, manager, other_manager
) -> None:
    from fastapi.testclient import TestClient

    from api.main import create_app

    cached = load_settings(database_url=database_url, dial_queue_state_cache_seconds=60,
                           **TEST_SETTINGS)  # fmt: skip
    project = factory.project(members=[manager.user])
    factory.number(project, **MSK)
    with TestClient(create_app(settings=cached, engine=db)) as c:
        first = c.get(q(project.id), headers=manager.headers).json()
        factory.number(project, **MSK)
        again = c.get(q(project.id), headers=manager.headers).json()
        assert again == first and again["total"] == 1  # reused, `at` says when counted
        # Cached or not, another project's manager is not let in.
        assert c.get(q(project.id), headers=other_manager.headers).status_code == 404


def test_lease_reads_project_state_itself_and_sees_a_rules_change_at_once(
    client, admin, manager, factory, session
) -> None:
    """The lease statement checks the project (paused: nothing; deleted: 404) at that instant,
    and a rules change through this process reaches its next lease despite the plan cache."""
    project = factory.project(members=[manager.user])
    once = factory.number(project, call_attempts=1, status="no_answer", **MSK)
    body = {"holder": "a", "count": 5}
    session.execute(update(Project).where(Project.id == project.id).values(status="paused"))
    session.commit()
    paused = client.post(q(project.id, "lease/"), headers=KEY, json=body)
    assert paused.status_code == 200 and paused.json()["numbers"] == []  # the plan is cached now
    session.execute(update(Project).where(Project.id == project.id).values(status="active"))
    session.commit()
    patch = client.patch(rules_url(project.id), headers=manager.headers, json={"max_attempts": 1})
    assert patch.status_code == 200, patch.text
    assert client.post(q(project.id, "lease/"), headers=KEY, json=body).json()["numbers"] == []
    client.patch(rules_url(project.id), headers=manager.headers, json={"max_attempts": 2})
    got = client.post(q(project.id, "lease/"), headers=KEY, json=body).json()["numbers"]
    assert [n["id"] for n in got] == [once.id]
    # One plan cache per app, kept across requests (a new one per request re-read the rules
    # and rebuilt the minute's statement on every lease).
    from api.queue_plans import plan_cache

    cache = plan_cache(client.app.state)
    assert cache is plan_cache(client.app.state) and project.id in cache._plans
    rows = session.execute(select(AuditLog.actor, AuditLog.entity_id, AuditLog.changes).where(
        AuditLog.action == "dial_queue_lease")).all()  # fmt: skip
    assert rows == [("service:softphone", once.id, {"status": ["no_answer", "in_progress"],
                     "leased_by": [None, "a"], "project_id": project.id})]  # fmt: skip
    session.execute(update(Project).where(Project.id == project.id).values(
        is_deleted=True, deleted_at=dt.datetime.now(dt.UTC), status="deleted"))  # fmt: skip
    session.commit()
    gone = client.post(q(project.id, "lease/"), headers=KEY, json=body)
    assert gone.status_code == 404
    assert (
        client.post(q(project.id, "lease/"), headers=manager.headers, json=body).status_code == 404
    )


def test_numbers_list_eligible_now_filter(client, manager, factory) -> None:
    """GET /api/phone-numbers/?eligible_now=: a leased or exhausted number is never eligible,
    whatever the hour (the predicate itself: tests/dialing/test_queue.py); a bad value is a 400
    naming the field."""
    project = factory.project(members=[manager.user])
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    leased = factory.number(project, status="in_progress", leased_by="a", leased_until=soon, **MSK)
    spent = factory.number(project, call_attempts=5, status="no_answer", **MSK)

    def ids(value: str) -> set[int]:
        resp = client.get("/api/phone-numbers/", headers=manager.headers,
                          params={"project_id": project.id, "eligible_now": value})  # fmt: skip
        assert resp.status_code == 200, resp.text
        return {r["id"] for r in resp.json()["results"]}

    assert ids("true") == set() and ids("false") == {leased.id, spent.id}
    bad = client.get(
        "/api/phone-numbers/", headers=manager.headers, params={"eligible_now": "maybe"}
    )
    assert bad.status_code == 400 and "eligible_now" in bad.text


# --- a real socket: 50 lease calls at once ---------------------------------------------------


@pytest.fixture
def live_url(app) -> Iterator[str]:  # type: ignore[no-untyped-def]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_fifty_concurrent_lease_calls_over_http(live_url, factory, session) -> None:
    project = factory.project()
    eligible = {factory.number(project, **MSK).id for _ in range(50)}
    factory.number(project, status="success", **MSK)
    factory.number(project, timezone_source="unknown")
    results: dict[int, list[int]] = {}
    statuses: list[int] = []
    start = threading.Barrier(50)

    def call(i: int) -> None:
        with httpx.Client(base_url=live_url, timeout=30) as c:
            start.wait()
            resp = c.post(q(project.id, "lease/"), headers=KEY,
                          json={"holder": f"agent-{i}", "count": 1})  # fmt: skip
        statuses.append(resp.status_code)
        results[i] = [n["id"] for n in resp.json().get("numbers", [])]

    threads = [threading.Thread(target=call, args=(i,)) for i in range(50)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert statuses == [200] * 50
    handed = [x for ids in results.values() for x in ids]
    assert len(handed) == len(set(handed)) == 50
    assert set(handed) == eligible
    owners = dict(session.execute(select(PhoneNumber.id, PhoneNumber.leased_by)).all())
    assert all(owners[x] == f"agent-{i}" for i, ids in results.items() for x in ids)
