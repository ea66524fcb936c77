"""Lock and statement timeouts on the real app (models/db.py, api/errors.py,
api/event_batcher.py): a held lock fails the waiter within the timeout with a message naming the
wait, never a hang - and one project's locked number never holds up another project's SoftPhone
events.

Each test holds a lock from another connection, with small timeouts set here (seconds) and a
timer that releases the lock long after them: without timeouts the request would hang until
that release, which the elapsed-time assertions catch."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from api.main import create_app
from api.webhook_auth import signed_headers
from models.db import db_timeouts, make_engine
from models.settings import load_settings
from models.tables import CallEvent, PhoneNumber
from tests.api.conftest import PASSWORD, TEST_SETTINGS, login
from tests.api.test_softphone_webhook import URL, body_of, ev

LOCK_TIMEOUT = 3.0  # seconds: what the app may wait for a lock here
RELEASE_AFTER = 30.0  # the blocker gives up its lock this late (a hang would last this long)
SECRET = TEST_SETTINGS["softphone_webhook_secret"]
T0 = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=3)


@pytest.fixture
def app(database_url: str, db: Engine) -> Iterator[FastAPI]:
    """The app as `numbase up` builds it (its own engine with the configured timeouts)."""
    settings = load_settings(
        database_url=database_url,
        db_lock_timeout_seconds=LOCK_TIMEOUT,
        db_webhook_lock_timeout_seconds=0.2,
        **TEST_SETTINGS,
    )
    engine = make_engine(database_url, pool_size=5, timeouts=db_timeouts(settings))
    yield create_app(settings=settings, engine=engine)
    engine.dispose()


class Blocker:
    """Another session holding a lock (released by `release()` or after RELEASE_AFTER)."""

    def __init__(self, database_url: str, *statements: str) -> None:
        self.conn = psycopg.connect(database_url, application_name="test-blocker")
        for sql in statements:
            self.conn.execute(sql)
        self._lock = threading.Lock()
        self._timer = threading.Timer(RELEASE_AFTER, self.release)
        self._timer.start()

    def release(self) -> None:
        with self._lock:
            if not self.conn.closed:
                self.conn.rollback()
                self.conn.close()
        self._timer.cancel()


@pytest.fixture
def blockers() -> Iterator[list[Blocker]]:
    held: list[Blocker] = []
    yield held
    for b in held:
        b.release()


def _signed_post(client: httpx.AsyncClient, events: Any) -> Any:
    body = body_of(events)
    return client.post(URL, content=body, headers=signed_headers(SECRET, body))


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize(
    "lock",
    [
        # What a bulk status update of project A holds on its rows.
        "UPDATE phone_numbers SET status = 'no_answer' WHERE id = {id}",
        # A delete or key update: it also blocks the call_events foreign-key check.
        "SELECT 1 FROM phone_numbers WHERE id = {id} FOR UPDATE",
    ],
    ids=["no-key-update", "for-update"],
)
async def test_project_b_events_are_answered_while_a_number_of_a_is_locked(
    app: FastAPI, factory, db: Engine, database_url: str, blockers: list[Blocker], lock: str
) -> None:
    a = factory.project(code="proj-a")
    b = factory.project(code="proj-b")
    locked = factory.number(a, "+79161300000")
    b_numbers = [factory.number(b, f"+7916131{i:04d}") for i in range(20)]
    blockers.append(Blocker(database_url, lock.format(id=locked.id)))

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:

        async def timed(events: Any) -> tuple[httpx.Response, float]:
            started = time.monotonic()
            resp = await _signed_post(client, events)
            return resp, time.monotonic() - started

        # A's event first, so it is in flight (and in the first group) when B's arrive.
        a_task = asyncio.ensure_future(
            timed(ev("call_ended", locked.phone_number, T0, event_id="a-1"))
        )
        await asyncio.sleep(0.05)
        b_answers = await asyncio.gather(
            *(
                timed(ev("call_started", n.phone_number, T0, event_id=f"b-{i}"))
                for i, n in enumerate(b_numbers)
            )
        )
        a_resp, a_elapsed = await a_task

    for resp, elapsed in b_answers:
        assert resp.status_code == 200, resp.text
        # Well under A's lock timeout: B never waited for A's lock (generous for a loaded box).
        assert elapsed < LOCK_TIMEOUT, elapsed
    # A's request waited for its lock for the lock timeout, then said so.
    assert a_resp.status_code == 503, a_resp.text
    assert "timed out waiting for a lock on phone_numbers" in a_resp.json()["detail"].lower()
    assert a_resp.headers["Retry-After"] == "3"
    assert LOCK_TIMEOUT * 0.9 <= a_elapsed < RELEASE_AFTER / 2, a_elapsed
    with db.connect() as conn:
        statuses = conn.execute(
            select(PhoneNumber.status).where(PhoneNumber.project_id == b.id)
        ).scalars()
        assert set(statuses) == {"in_progress"}
        stored = conn.execute(select(CallEvent.event_id)).scalars().all()
    assert "a-1" not in stored  # rolled back whole: the SoftPhone's retry is not a duplicate
    assert len(stored) == len(b_numbers)
    assert app.state.event_batcher.stats.lock_timeouts == 1


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_an_event_on_a_briefly_locked_number_waits_and_is_applied(
    app: FastAPI, factory, db: Engine, database_url: str, blockers: list[Blocker]
) -> None:
    """A lock released within the timeout: the set-aside request is stored, not refused."""
    project = factory.project()
    number = factory.number(project, "+79161320000")
    blocker = Blocker(
        database_url, f"UPDATE phone_numbers SET geo_id = NULL WHERE id = {number.id}"
    )
    blockers.append(blocker)
    threading.Timer(0.5, blocker.release).start()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        resp = await _signed_post(client, ev("call_ended", number.phone_number, T0))
    assert resp.status_code == 200, resp.text
    with db.connect() as conn:
        attempts = conn.scalar(select(PhoneNumber.call_attempts).where(PhoneNumber.id == number.id))
    assert attempts == 1
    assert app.state.event_batcher.stats.set_aside == 1


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url="http://testserver") as c:
        yield c


@pytest.mark.parametrize(
    "lock",
    [
        # A concurrent load of the same number into the same project, not committed yet.
        "INSERT INTO phone_numbers (phone_number, project_id) VALUES ('+79161330001', {project})",
        # A table lock (e.g. a maintenance job): PostgreSQL does not name it; the loader does.
        "LOCK TABLE phone_numbers IN SHARE MODE",
    ],
    ids=["row", "table"],
)
def test_api_bulk_create_against_a_lock_answers_503_within_the_timeout(
    client: TestClient, factory, database_url: str, blockers: list[Blocker], lock: str, db: Engine
) -> None:
    manager = login(client, factory.user(role="manager", password=PASSWORD))
    project = factory.project(members=[manager.user])
    blockers.append(Blocker(database_url, lock.format(project=project.id)))
    started = time.monotonic()
    resp = client.post(
        "/api/phone-numbers/bulk/",
        json={"project_id": project.id, "numbers": ["+79161330001", "+79161330002"]},
        headers=manager.headers,
    )
    elapsed = time.monotonic() - started
    assert resp.status_code == 503, resp.text
    detail = resp.json()["detail"].lower()
    assert "timed out waiting for a lock on phone_numbers" in detail
    assert "nothing was imported" in detail
    assert "numbase_db_lock_timeout_seconds" in detail
    assert LOCK_TIMEOUT * 0.9 <= elapsed < RELEASE_AFTER / 2, elapsed
    blockers[0].release()
    with db.connect() as conn:
        assert (
            conn.scalar(select(PhoneNumber.id).where(PhoneNumber.project_id == project.id)) is None
        )


def test_a_patch_against_a_locked_number_answers_503_naming_the_table(
    client: TestClient, factory, database_url: str, blockers: list[Blocker]
) -> None:
    manager = login(client, factory.user(role="manager", password=PASSWORD))
    project = factory.project(members=[manager.user])
    number = factory.number(project, "+79161340000")
    blockers.append(
        Blocker(database_url, f"UPDATE phone_numbers SET status = 'failed' WHERE id = {number.id}")
    )
    started = time.monotonic()
    resp = client.patch(
        f"/api/phone-numbers/{number.id}/", json={"status": "in_progress"}, headers=manager.headers
    )
    assert resp.status_code == 503, resp.text
    assert "timed out waiting for a lock on phone_numbers" in resp.json()["detail"].lower()
    assert time.monotonic() - started < RELEASE_AFTER / 2
