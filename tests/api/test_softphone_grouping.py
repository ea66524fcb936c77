"""Group commit of the webhook (api/event_batcher.py) on the real database and the real app:
concurrent requests share transactions, each still gets its own outcomes, and one request's
failure never fails another's."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import DataError
from sqlalchemy.orm import Session

from api.event_batcher import EventBatcher
from api.webhook_auth import signed_headers
from models.call_events import ACCEPTED, DUPLICATE, UNMATCHED, EventIn
from models.tables import CallEvent, PhoneNumber
from tests.api.conftest import TEST_SETTINGS
from tests.api.test_softphone_webhook import URL, body_of, ev

pytestmark = pytest.mark.anyio
T0 = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=1)
SECRET = TEST_SETTINGS["softphone_webhook_secret"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def event(event_id: str, kind: str, phone: str, *, payload: str | None = None) -> EventIn:
    raw = {"event_id": event_id, "event_type": kind, "phone_number": phone, "status": "success"}
    return EventIn(event_id, kind, phone, T0, payload or json.dumps(raw))


class RowLock:
    """Holds a number's row lock in another connection, so the transaction in flight waits on it
    while the test queues more requests behind it. FOR UPDATE: the call_events foreign-key check
    waits for it (SKIP LOCKED cannot step around that one), so with a long `group_lock_timeout`
    the group lane's transaction stays in flight until the release."""

    def __init__(self, engine: Engine, number_id: int) -> None:
        self.conn = engine.connect()
        self.conn.execute(
            text("SELECT 1 FROM phone_numbers WHERE id = :id FOR UPDATE"), {"id": number_id}
        )

    def release(self) -> None:
        self.conn.rollback()
        self.conn.close()


async def submit_blocked(
    engine: Engine, batcher: EventBatcher, blocker: PhoneNumber, event_id: str
) -> tuple[RowLock, asyncio.Future[Any]]:
    """Submit one event on `blocker` while its row is locked elsewhere: once this returns, that
    request's transaction is in flight and waiting, and later submits queue behind it."""
    lock = RowLock(engine, blocker.id)
    first = asyncio.ensure_future(
        batcher.submit([event(event_id, "call_ended", blocker.phone_number)])
    )
    await wait_for_lock_waiter(engine)
    return lock, first


async def wait_for_lock_waiter(engine: Engine) -> None:
    """Until some backend waits on a lock: the first group is in flight and blocked."""
    for _ in range(500):
        with engine.connect() as conn:
            waiting = conn.scalar(
                text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
            )
        if waiting:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the first transaction never waited on the lock")


async def test_requests_queued_behind_a_transaction_share_the_next_one(
    db: Engine, factory, session: Session
) -> None:
    project = factory.project()
    blocker = factory.number(project, "+79161240000")
    numbers = [factory.number(project, f"+7916124{i:04d}") for i in range(1, 21)]
    batcher = EventBatcher(db, group_lock_timeout=30)
    lock, first = await submit_blocked(db, batcher, blocker, "g-0")
    try:
        # Twenty requests of one event each, plus one unknown number and a duplicate of g-1.
        later = [
            asyncio.ensure_future(batcher.submit([event(f"g-{i}", "call_ended", n.phone_number)]))
            for i, n in enumerate(numbers, start=1)
        ]
        unknown = asyncio.ensure_future(
            batcher.submit([event("g-x", "call_ended", "+79990000000")])
        )
        again = asyncio.ensure_future(
            batcher.submit([event("g-1", "call_ended", numbers[0].phone_number)])
        )
        await asyncio.sleep(0.05)
        assert not first.done() and not any(f.done() for f in later)
    finally:
        lock.release()
    assert [o.result for o in await first] == [ACCEPTED]
    results = [await f for f in later]
    assert all(len(r) == 1 and r[0].result == ACCEPTED for r in results)
    assert [r[0].phone_number_id for r in results] == [n.id for n in numbers]
    assert (await unknown)[0].result == UNMATCHED
    assert (await again)[0].result == DUPLICATE
    # One transaction for the first request, one for the 22 queued behind it.
    assert (batcher.stats.transactions, batcher.stats.requests) == (2, 23)
    session.expire_all()
    attempts = session.scalars(
        select(PhoneNumber.call_attempts).where(PhoneNumber.project_id == project.id)
    ).all()
    assert sorted(attempts) == [1] * 21
    assert session.scalar(select(text("count(*)")).select_from(CallEvent)) == 22


async def test_a_bad_request_in_a_group_fails_alone(db: Engine, factory, session: Session) -> None:
    project = factory.project()
    blocker = factory.number(project, "+79161250000")
    good = factory.number(project, "+79161250001")
    batcher = EventBatcher(db, group_lock_timeout=30)
    lock, first = await submit_blocked(db, batcher, blocker, "b-0")
    try:
        ok = asyncio.ensure_future(batcher.submit([event("b-1", "call_ended", good.phone_number)]))
        # Not JSON: PostgreSQL refuses the cast, which fails the shared transaction.
        bad = asyncio.ensure_future(
            batcher.submit([event("b-2", "call_ended", good.phone_number, payload="{not json")])
        )
        await asyncio.sleep(0.05)
    finally:
        lock.release()
    await first
    assert (await ok)[0].result == ACCEPTED
    with pytest.raises(DataError):
        await bad
    assert batcher.stats.isolated_retries == 1
    ids = session.scalars(select(CallEvent.event_id).order_by(CallEvent.event_id)).all()
    assert ids == ["b-0", "b-1"]
    session.expire_all()
    assert session.get(PhoneNumber, good.id).call_attempts == 1  # type: ignore[union-attr]


async def test_a_cancelled_request_does_not_strand_the_others(db: Engine, factory) -> None:
    project = factory.project()
    blocker = factory.number(project, "+79161260000")
    other = factory.number(project, "+79161260001")
    batcher = EventBatcher(db, group_lock_timeout=30)
    # The flusher's caller hangs up mid-transaction; the flush goes on and commits.
    lock, first = await submit_blocked(db, batcher, blocker, "c-0")
    try:
        waiting = asyncio.ensure_future(
            batcher.submit([event("c-1", "call_ended", other.phone_number)])
        )
        await asyncio.sleep(0.02)
        first.cancel()
    finally:
        threading.Timer(0.1, lock.release).start()
    assert (await asyncio.wait_for(waiting, 10))[0].result == ACCEPTED
    with db.connect() as conn:
        stored = conn.scalars(text("SELECT event_id FROM call_events ORDER BY 1")).all()
    assert stored == ["c-0", "c-1"]


async def test_concurrent_http_requests_each_get_their_own_answer(
    app: Any, factory, session: Session
) -> None:
    project = factory.project()
    numbers = [factory.number(project, f"+7916127{i:04d}") for i in range(30)]
    requests = [
        ev("call_started", n.phone_number, T0, event_id=f"h-{i}") for i, n in enumerate(numbers)
    ]
    requests.append(ev("call_started", "+79990000001", T0, event_id="h-unknown"))

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:

        async def post(payload: dict[str, Any]) -> httpx.Response:
            body = body_of(payload)
            return await client.post(URL, content=body, headers=signed_headers(SECRET, body))

        answers = await asyncio.gather(*(post(r) for r in requests))
    for payload, resp in zip(requests[:-1], answers[:-1], strict=True):
        assert resp.status_code == 200, resp.text
        (result,) = resp.json()["results"]
        assert (result["event_id"], result["result"]) == (payload["event_id"], ACCEPTED)
    assert answers[-1].status_code == 202
    assert answers[-1].json()["results"][0]["reason"] == "unknown number"
    stats = app.state.event_batcher.stats
    assert stats.requests == 31 and stats.transactions < 31
    session.expire_all()
    statuses = session.scalars(
        select(PhoneNumber.status).where(PhoneNumber.project_id == project.id)
    ).all()
    assert set(statuses) == {"in_progress"}


async def test_the_fast_path_answers_the_webhook_and_passes_everything_else_on(
    app: Any, factory
) -> None:
    from api.webhook_fastpath import WebhookFastPath

    passed_on: list[tuple[str, str]] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        passed_on.append((scope["method"], scope["path"]))
        await send({"type": "http.response.start", "status": 418, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    fast = WebhookFastPath(inner, api=app)
    number = factory.number(factory.project(), "+79161280000")
    transport = httpx.ASGITransport(app=fast)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        body = body_of(ev("call_ended", number.phone_number, T0, event_id="fast-1"))
        ok = await client.post(URL, content=body, headers=signed_headers(SECRET, body))
        unsigned = await client.post(URL, content=body)
        bad_json = b"{nope"
        malformed = await client.post(
            URL, content=bad_json, headers=signed_headers(SECRET, bad_json)
        )
        other = await client.get(URL)
        elsewhere = await client.post("/api/softphone/other/", content=body)
    assert ok.status_code == 200 and ok.json()["accepted"] == 1
    # Errors in the app's contract, from the app's own handlers.
    assert unsigned.status_code == 401 and "Missing" in unsigned.json()["detail"]
    assert malformed.status_code == 400
    assert malformed.json() == {"non_field_errors": ["Malformed JSON body."]}
    assert (other.status_code, elsewhere.status_code) == (418, 418)
    assert passed_on == [("GET", URL), ("POST", "/api/softphone/other/")]


async def test_two_workers_racing_on_the_same_numbers_apply_every_event_once(
    db: Engine, factory, session: Session
) -> None:
    """Two processes' batchers (the API runs several workers) hammer the same five numbers: their
    group lanes find each other's numbers busy (SKIP LOCKED) and set requests aside to wait;
    every event is still stored and counted exactly once, none fails."""
    project = factory.project()
    numbers = [factory.number(project, f"+7916128{i:04d}") for i in range(5)]
    workers = [EventBatcher(db), EventBatcher(db)]
    jobs = [
        workers[i % 2].submit(
            [event(f"r-{i}", "call_ended", numbers[i % len(numbers)].phone_number)]
        )
        for i in range(120)
    ]
    results = await asyncio.wait_for(asyncio.gather(*jobs), 60)
    assert all(r[0].result == ACCEPTED for r in results)
    session.expire_all()
    attempts = session.scalars(
        select(PhoneNumber.call_attempts).where(PhoneNumber.project_id == project.id)
    ).all()
    assert sorted(attempts) == [24] * 5
    assert sum(w.stats.requests for w in workers) == 120
    assert all(w.stats.lock_timeouts == 0 for w in workers)
