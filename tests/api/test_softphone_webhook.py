"""SoftPhone webhook: signatures, idempotency, batches, ordering, unknown numbers, audit."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import random
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from api.webhook_auth import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, signed_headers
from models.call_events import EventIn, store_and_apply
from models.tables import AuditLog, CallEvent, PhoneNumber
from tests.api.conftest import TEST_SETTINGS

SECRET = TEST_SETTINGS["softphone_webhook_secret"]
URL = "/api/softphone/webhook/"
T0 = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=2)
_ids = itertools.count(1)


def body_of(events: Any) -> bytes:
    return json.dumps(events, default=str).encode()


def post(client: TestClient, events: Any, **kw: Any) -> Any:
    body = body_of(events)
    return client.post(URL, content=body, headers=signed_headers(SECRET, body, **kw))


def ev(kind: str, phone: str, at: dt.datetime, **kw: Any) -> dict[str, Any]:
    return {
        "event_id": kw.pop("event_id", f"ev-{next(_ids)}"),
        "event_type": kind,
        "phone_number": phone,
        "occurred_at": at.isoformat(),
        **kw,
    }


def state(session: Session, number_id: int) -> tuple[Any, ...]:
    session.expire_all()
    n = session.get(PhoneNumber, number_id)
    assert n is not None
    return n.status, n.call_attempts, n.last_call_at, n.result_data


# --- signatures ----------------------------------------------------------------------------


def test_valid_signature_is_accepted(client: TestClient, factory) -> None:
    number = factory.number(factory.project(), "+79161230001")
    resp = post(client, ev("call_started", number.phone_number, T0))
    assert resp.status_code == 200, resp.text
    assert resp.json()["results"][0]["result"] == "accepted"


@pytest.mark.parametrize(
    "headers, detail",
    [
        ({}, "Missing"),
        ({TIMESTAMP_HEADER: "TS"}, "Missing"),
        ({TIMESTAMP_HEADER: "TS", SIGNATURE_HEADER: "sha256=" + "0" * 64}, "Invalid signature"),
        ({TIMESTAMP_HEADER: "TS", SIGNATURE_HEADER: "WRONG_SECRET"}, "Invalid signature"),
        ({TIMESTAMP_HEADER: "TS", SIGNATURE_HEADER: "OTHER_BODY"}, "Invalid signature"),
        ({TIMESTAMP_HEADER: "yesterday", SIGNATURE_HEADER: "sha256=ab"}, "Unix seconds"),
        ({TIMESTAMP_HEADER: "STALE", SIGNATURE_HEADER: "SIGNED"}, "Stale"),
        ({TIMESTAMP_HEADER: "FUTURE", SIGNATURE_HEADER: "SIGNED"}, "Stale"),
    ],
)
def test_missing_invalid_and_stale_signatures_are_401(
    client: TestClient, db: Engine, headers: dict[str, str], detail: str
) -> None:
    body = body_of(ev("call_started", "+79161230002", T0))
    now = int(time.time())
    ts = {"TS": now, "STALE": now - 301, "FUTURE": now + 301}.get(headers.get(TIMESTAMP_HEADER))
    real = dict(headers)
    if ts is not None:
        real[TIMESTAMP_HEADER] = str(ts)
    sig = real.get(SIGNATURE_HEADER)
    if sig in ("SIGNED", None) and ts is not None and SIGNATURE_HEADER in headers:
        real[SIGNATURE_HEADER] = sign(SECRET, ts, body)
    elif sig == "WRONG_SECRET":
        real[SIGNATURE_HEADER] = sign("another-secret-entirely", ts, body)
    elif sig == "OTHER_BODY":
        real[SIGNATURE_HEADER] = sign(SECRET, ts, body + b" ")
    resp = client.post(URL, content=body, headers={**real, "Content-Type": "application/json"})
    assert resp.status_code == 401, resp.text
    assert detail in resp.json()["detail"]
    with db.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM call_events")) == 0


def test_rotated_secret_list_and_timestamp_tamper(client: TestClient, factory) -> None:
    factory.number(factory.project(), "+79161230003")
    body = body_of(ev("call_started", "+79161230003", T0))
    ts = int(time.time())
    both = sign("the-old-secret-value", ts, body) + ", " + sign(SECRET, ts, body)
    headers = {TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: both}
    assert client.post(URL, content=body, headers=headers).status_code == 200
    # The timestamp is signed: moving it invalidates the signature.
    headers = {TIMESTAMP_HEADER: str(ts + 1), SIGNATURE_HEADER: sign(SECRET, ts, body)}
    assert client.post(URL, content=body, headers=headers).status_code == 401


def test_service_key_cannot_post_events(client: TestClient, factory) -> None:
    body = body_of(ev("call_started", "+79161230004", T0))
    resp = client.post(URL, content=body, headers={"X-API-Key": TEST_SETTINGS["softphone_api_key"]})
    assert resp.status_code == 401


# --- idempotency, batches, unknown numbers -------------------------------------------------


def test_same_event_twice_changes_state_once(client: TestClient, factory, session: Session) -> None:
    number = factory.number(factory.project(), "+79161230010")
    ended = ev("call_ended", "8 916 123-00-10", T0)
    first = post(client, ended)
    assert first.status_code == 200 and first.json()["accepted"] == 1
    after_first = state(session, number.id)
    again = post(client, ended)
    assert again.status_code == 200, again.text
    assert again.json()["results"][0]["result"] == "duplicate"
    assert state(session, number.id) == after_first
    assert after_first[1] == 1
    # A repeat inside one batch counts once too.
    twice = ev("call_ended", number.phone_number, T0 + dt.timedelta(hours=1))
    resp = post(client, [twice, twice])
    assert [r["result"] for r in resp.json()["results"]] == ["accepted", "duplicate"]
    assert state(session, number.id)[1] == 2
    assert session.scalar(select(text("count(*)")).select_from(CallEvent)) == 2


def test_batch_with_bad_event_in_the_middle(client: TestClient, factory, session: Session) -> None:
    project = factory.project()
    a = factory.number(project, "+79161230020")
    b = factory.number(project, "+79161230021")
    batch = [
        ev("call_started", a.phone_number, T0),
        ev("call_result", a.phone_number, T0 + dt.timedelta(minutes=1)),  # no status
        ev("call_ended", "not a phone", T0),
        {"event_id": "x", "event_type": "call_exploded", "phone_number": b.phone_number},
        "not an object",
        ev("call_started", b.phone_number, T0, occurred_at="2999-01-01T00:00:00Z"),
        ev("call_result", b.phone_number, T0, status="success", result_data={"deal": 1}),
    ]
    resp = post(client, batch)
    assert resp.status_code == 207, resp.text
    body = resp.json()
    results = body["results"]
    assert [r["index"] for r in results] == list(range(7))
    assert [r["result"] for r in results] == [
        "accepted", "error", "error", "error", "error", "error", "accepted",
    ]  # fmt: skip
    assert "status" in results[1]["reason"]
    assert "phone_number" in results[2]["reason"]
    assert "event_type" in results[3]["reason"] and results[3]["event_id"] == "x"
    assert "JSON object" in results[4]["reason"]
    assert "future" in results[5]["reason"]
    assert (body["accepted"], body["errors"]) == (2, 5)
    assert state(session, a.id)[0] == "in_progress"
    assert state(session, b.id)[0] == "success"
    assert state(session, b.id)[3] == {"deal": 1}


def test_single_invalid_event_is_400_in_the_field_contract(client: TestClient, db) -> None:
    resp = post(client, {"event_id": "e", "event_type": "call_ended", "phone_number": "+7"})
    assert resp.status_code == 400
    assert "occurred_at" in resp.json()
    assert post(client, []).status_code == 400
    body = b"{not json"
    resp = client.post(URL, content=body, headers=signed_headers(SECRET, body))
    assert resp.status_code == 400 and "Malformed" in resp.text
    too_many = [ev("call_ended", "+79161230000", T0) for _ in range(1001)]
    assert post(client, too_many).status_code == 400


def test_unknown_number_is_stored_and_flagged(client: TestClient, factory, session) -> None:
    project = factory.project(code="known-project")
    known = factory.number(project, "+79161230030")
    resp = post(
        client,
        [
            ev("call_started", "+79990000000", T0),
            ev("call_started", known.phone_number, T0, project_code="no-such-project"),
            ev("call_started", "+79990000001", T0, project_code="known-project"),
        ],
    )
    assert resp.status_code == 202, resp.text
    results = resp.json()["results"]
    assert [r["result"] for r in results] == ["unmatched"] * 3
    assert [r["reason"] for r in results] == [
        "unknown number", "unknown project", "number not in project",
    ]  # fmt: skip
    rows = session.scalars(select(CallEvent).order_by(CallEvent.event_id)).all()
    assert len(rows) == 3 and not any(r.matched for r in rows)
    assert {r.phone_number_id for r in rows} == {None}
    assert {r.project_id for r in rows} == {None, project.id}
    assert state(session, known.id)[0] == "new"
    # Unmatched events are idempotent too.
    again = post(client, ev("call_started", "+79990000000", T0, event_id=rows[0].event_id))
    assert again.status_code == 200 and again.json()["duplicates"] == 1


def test_project_resolution(client: TestClient, factory, session: Session) -> None:
    old = factory.project()
    new = factory.project()
    deleted = factory.project()
    phone = "+79161230040"
    in_old = factory.number(old, phone)
    in_new = factory.number(new, phone)
    in_deleted = factory.number(deleted, phone)
    session.execute(
        text("UPDATE projects SET is_deleted = true, deleted_at = now(), status = 'deleted' "
             "WHERE id = :id"),
        {"id": deleted.id},
    )  # fmt: skip
    session.commit()
    results = post(
        client,
        [
            ev("call_started", phone, T0),  # most recently created live row: `new`
            ev("call_ended", phone, T0, project_id=old.id),
            ev("call_ended", phone, T0, project_code=old.code, project_id=old.id),
            ev("call_ended", phone, T0, project_code=new.code, project_id=old.id),
        ],
    ).json()["results"]
    assert [r["phone_number_id"] for r in results[:3]] == [in_new.id, in_old.id, in_old.id]
    assert results[3]["result"] == "unmatched"
    assert state(session, in_new.id)[0] == "in_progress"
    assert state(session, in_old.id)[1] == 2
    assert state(session, in_deleted.id)[:2] == ("new", 0)


def test_status_changes_are_audited_by_the_system_actor(
    client: TestClient, factory, session: Session
) -> None:
    number = factory.number(factory.project(), "+79161230050")
    post(client, [ev("call_started", number.phone_number, T0)])
    post(client, [ev("call_ended", number.phone_number, T0)])  # no status change: no row
    post(client, [ev("call_result", number.phone_number, T0, status="no_answer")])
    rows = session.scalars(select(AuditLog).order_by(AuditLog.id)).all()
    assert [(r.actor, r.action, r.entity_id) for r in rows] == [
        ("system:softphone", "softphone_status", number.id)
    ] * 2
    assert [r.changes["status"] for r in rows] == [
        ["new", "in_progress"],
        ["in_progress", "no_answer"],
    ]


# --- ordering ------------------------------------------------------------------------------


def two_calls(phone: str) -> list[dict[str, Any]]:
    """Two calls, the second newer; the first's result is stamped before its start (skew)."""
    m = dt.timedelta(minutes=1)
    return [
        ev("call_started", phone, T0, call_id="c1"),
        ev("call_ended", phone, T0 + 2 * m, call_id="c1"),
        ev("call_result", phone, T0 - m, call_id="c1", status="no_answer",
           result_data={"reason": "busy", "score": 1}),
        ev("call_started", phone, T0 + 60 * m, call_id="c2"),
        ev("call_ended", phone, T0 + 65 * m, call_id="c2"),
        ev("call_result", phone, T0 + 66 * m, call_id="c2", status="success",
           result_data={"score": 9, "deal": True}),
    ]  # fmt: skip


def test_in_order_and_shuffled_end_in_the_same_state(
    client: TestClient, factory, session: Session
) -> None:
    project = factory.project()
    base = {"source": "import", "score": 0}
    reference = factory.number(project, "+79161231000", call_attempts=3, result_data=base)
    for event in two_calls(reference.phone_number):  # one request per event, in order
        assert post(client, event).status_code == 200
    expected = state(session, reference.id)
    assert expected == (
        "success",
        5,
        T0 + dt.timedelta(minutes=65),
        {"source": "import", "reason": "busy", "score": 9, "deal": True},
    )
    rng = random.Random(7)
    orders = [list(reversed(range(6)))] + [rng.sample(range(6), 6) for _ in range(7)]
    for k, order in enumerate(orders):
        number = factory.number(project, f"+7916123{k + 1:04d}", call_attempts=3, result_data=base)
        events = two_calls(number.phone_number)
        shuffled = [events[i] for i in order]
        if k % 2:  # half of them one event per request, half as one shuffled batch
            for event in shuffled:
                assert post(client, event).status_code == 200
        else:
            assert post(client, shuffled).status_code == 200
        assert state(session, number.id) == expected, order


def test_result_before_its_start_and_a_newer_call_reopens(
    client: TestClient, factory, session: Session
) -> None:
    number = factory.number(factory.project(), "+79161232000")
    phone = number.phone_number
    post(client, ev("call_result", phone, T0 + dt.timedelta(seconds=5), status="no_answer"))
    # Start of an older call arriving late: the result stands.
    post(client, ev("call_started", phone, T0))
    assert state(session, number.id)[0] == "no_answer"
    # The start of a newer call reopens the number (no_answer is the retry state).
    post(client, ev("call_started", phone, T0 + dt.timedelta(hours=1)))
    assert state(session, number.id)[0] == "in_progress"


def test_final_statuses_obey_the_transition_table_like_the_api(
    client: TestClient, factory, session: Session, admin
) -> None:
    """One rule (models/number_transitions.py): the SoftPhone can no more turn a success into
    a failure, or reopen a failed number nobody re-queued, than the API's PATCH can."""
    project = factory.project()
    won = factory.number(project, "+79161232100", status="success")
    lost = factory.number(project, "+79161232101", status="failed")
    later = T0 + dt.timedelta(hours=1)
    for number in (won, lost):
        phone = number.phone_number
        assert post(client, ev("call_started", phone, later, call_id="x")).status_code == 200
        assert post(client, ev("call_ended", phone, later, call_id="x")).status_code == 200
        other = "failed" if number is won else "success"
        resp = post(client, ev("call_result", phone, later, call_id="x", status=other))
        assert resp.status_code == 200  # stored: nothing a softphone sends is lost
    assert state(session, won.id)[:2] == ("success", 1)  # the call attempt still counts
    assert state(session, lost.id)[:2] == ("failed", 1)
    refused = client.patch(
        f"/api/phone-numbers/{won.id}/", json={"status": "failed"}, headers=admin.headers
    )
    assert refused.status_code == 400  # the same table refuses the same edge
    assert not session.scalars(
        select(AuditLog).where(
            AuditLog.entity_type == "phone_number", AuditLog.entity_id.in_([won.id, lost.id])
        )
    ).all()
    # Re-queued by hand (failed -> new), the number takes the SoftPhone's next call again.
    requeued = client.patch(
        f"/api/phone-numbers/{lost.id}/", json={"status": "new"}, headers=admin.headers
    )
    assert requeued.status_code == 200, requeued.text
    post(client, ev("call_started", lost.phone_number, later + dt.timedelta(hours=1)))
    assert state(session, lost.id)[0] == "in_progress"


def test_every_permutation_at_the_data_layer(db: Engine, factory) -> None:
    """120 of the 720 orders (every 6th) of the two-call scenario, through the data layer."""
    project = factory.project()
    template = two_calls("+79161233000")
    results: set[tuple[Any, ...]] = set()
    orders = list(itertools.islice(itertools.permutations(range(6)), 0, None, 6))
    with db.begin() as conn:
        ids = [
            conn.scalar(
                text("INSERT INTO phone_numbers (phone_number, project_id, call_attempts) "
                     "VALUES (:p, :proj, 3) RETURNING id"),
                {"p": f"+7926{k:07d}", "proj": project.id},
            )
            for k in range(len(orders))
        ]  # fmt: skip
        for k, order in enumerate(orders):
            phone = f"+7926{k:07d}"
            for i in order:
                raw = dict(template[i], phone_number=phone, event_id=f"p{k}-{i}")
                event = EventIn(
                    event_id=raw["event_id"],
                    event_type=raw["event_type"],
                    phone_number=phone,
                    occurred_at=dt.datetime.fromisoformat(raw["occurred_at"]),
                    payload=json.dumps(raw),
                )
                store_and_apply(conn, [event])
        rows = conn.execute(
            text("SELECT status, call_attempts, last_call_at, result_data FROM phone_numbers "
                 "WHERE id = ANY(:ids)"),
            {"ids": ids},
        ).all()  # fmt: skip
        results = {(r[0], r[1], r[2], json.dumps(r[3], sort_keys=True)) for r in rows}
    assert len(results) == 1, results
    status, attempts, _, data = results.pop()
    assert (status, attempts) == ("success", 5)
    assert json.loads(data) == {"reason": "busy", "score": 9, "deal": True}


def test_concurrent_overlapping_batches_converge(db: Engine, factory) -> None:
    """Four connections apply shuffled overlapping batches on the same numbers at once: no
    deadlock, every event counted once, same state as the in-order reference."""
    from concurrent.futures import ThreadPoolExecutor

    project = factory.project()
    phones = [f"+7917000000{k}" for k in range(5)]
    for phone in phones:
        factory.number(project, phone)
    events = []
    for phone in phones:
        for i, raw in enumerate(two_calls(phone)):
            raw = dict(raw, event_id=f"{phone}-{i}")
            events.append(
                EventIn(
                    event_id=raw["event_id"],
                    event_type=raw["event_type"],
                    phone_number=phone,
                    occurred_at=dt.datetime.fromisoformat(raw["occurred_at"]),
                    payload=json.dumps(raw),
                )
            )
    rng = random.Random(3)
    batches = [rng.sample(events, 12) for _ in range(16)] + [events]  # overlaps and repeats

    def run(batch: list[EventIn]) -> None:
        with db.begin() as conn:
            store_and_apply(conn, batch)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(run, batches))
    with db.connect() as conn:
        rows = conn.execute(
            text("SELECT status, call_attempts, result_data FROM phone_numbers")
        ).all()
        stored = conn.scalar(text("SELECT count(*) FROM call_events"))
    assert stored == len(events)
    assert {(r[0], r[1], json.dumps(r[2], sort_keys=True)) for r in rows} == {
        ("success", 2, json.dumps({"reason": "busy", "score": 9, "deal": True}, sort_keys=True))
    }
