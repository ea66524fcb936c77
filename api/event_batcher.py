"""Group commit for the SoftPhone webhook: concurrent requests share one transaction.

One event per request is how softphones post, and one transaction per event costs PostgreSQL
about 3 ms of CPU (planning and running the three set-based statements, a commit), so a 2-core
box tops out near 300 events/s. Here, requests that arrive while a transaction is in flight are
queued and the next free flusher stores and applies all of them in one ``store_and_apply`` call
(up to ``MAX_BATCH`` events): at low load a request is flushed at once, alone (no added
latency); under load the groups grow by themselves and the cost per event falls.

What a request sees does not change: its answer is sent after the transaction holding its events
has committed, and its events' outcomes are exactly what they would be alone (the ordering rule
of models/call_events.py is order- and batching-independent; a repeated event id is a duplicate
whether the copy came in the same request or another one). If a shared transaction fails with
anything but a lost connection, each request of the group is retried in its own transaction,
so one request's bad data never fails another's.

No background task: the waiting requests themselves take turns as flushers (at most
``MAX_FLUSHERS`` at once per process), each flush shielded from its caller's cancellation so a
client that hangs up cannot strand the others' answers.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from psycopg import errors as pg_errors
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from api.observability import WEBHOOK_REQUESTS_GROUPED, WEBHOOK_TRANSACTIONS
from models.call_events import MAX_BATCH, EventIn, EventOutcome, store_and_apply

log = logging.getLogger("numbase.api.softphone")

MAX_FLUSHERS = 1  # transactions at once per process: the next group fills while one runs
_RETRIES = 3  # deadlocks cannot happen by design (models/call_events.py); belt and braces


@dataclass(eq=False)
class _Request:
    events: Sequence[EventIn]
    future: asyncio.Future[list[EventOutcome]]


@dataclass(eq=False)
class GroupStats:
    """Counters for /metrics and tests: how much coalescing happened."""

    transactions: int = 0
    requests: int = 0
    isolated_retries: int = 0


class EventBatcher:
    def __init__(self, engine: Engine, *, max_events: int = MAX_BATCH) -> None:
        self._engine = engine
        self._max_events = max_events
        self._pending: deque[_Request] = deque()
        self._flushers = 0
        self._turn: asyncio.Future[None] | None = None  # done when a flusher slot frees up
        self.stats = GroupStats()

    async def submit(self, events: Sequence[EventIn]) -> list[EventOutcome]:
        """Store and apply `events` (one request's, in order); their outcomes, once committed."""
        if not events:
            return []
        loop = asyncio.get_running_loop()
        request = _Request(events, loop.create_future())
        self._pending.append(request)
        while not request.future.done():
            if self._pending and self._flushers < MAX_FLUSHERS:
                self._flushers += 1
                await asyncio.shield(loop.create_task(self._flush(self._take())))
                continue
            if self._turn is None or self._turn.done():
                self._turn = loop.create_future()
            await asyncio.wait({request.future, self._turn}, return_when=asyncio.FIRST_COMPLETED)
        return request.future.result()

    def _take(self) -> list[_Request]:
        """The oldest pending requests, up to max_events events (at least one request)."""
        group = [self._pending.popleft()]
        size = len(group[0].events)
        while self._pending and size + len(self._pending[0].events) <= self._max_events:
            request = self._pending.popleft()
            size += len(request.events)
            group.append(request)
        return group

    async def _flush(self, group: list[_Request]) -> None:
        try:
            await self._store(group)
        finally:
            # Here, not in submit(): a cancelled caller must not free the slot early.
            self._flushers -= 1
            if self._turn is not None and not self._turn.done():
                self._turn.set_result(None)

    async def _store(self, group: list[_Request]) -> None:
        events = [e for r in group for e in r.events]
        try:
            outcomes = await asyncio.to_thread(self._commit, events)
        except OperationalError as exc:  # the database is gone: every request fails alike
            for request in group:
                _fail(request, exc)
            return
        except DBAPIError as exc:
            if len(group) == 1:
                _fail(group[0], exc)
                return
            # Someone's data broke the shared transaction: each request alone, so only its
            # owner gets the error.
            self.stats.isolated_retries += 1
            log.warning("softphone group of %d requests retried one by one: %s", len(group), exc)
            for request in group:
                try:
                    _done(request, await asyncio.to_thread(self._commit, list(request.events)))
                except DBAPIError as single:
                    _fail(request, single)
            return
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting requests, not lost
            for request in group:
                _fail(request, exc)
            raise
        self.stats.transactions += 1
        self.stats.requests += len(group)
        WEBHOOK_TRANSACTIONS.inc()
        WEBHOOK_REQUESTS_GROUPED.inc(len(group))
        offset = 0
        for request in group:
            n = len(request.events)
            _done(request, outcomes[offset : offset + n])
            offset += n

    def _commit(self, events: list[EventIn]) -> list[EventOutcome]:
        for attempt in range(1, _RETRIES + 1):
            try:
                with self._engine.connect() as conn:
                    outcome = store_and_apply(conn, events)
                    conn.commit()
                return outcome.events
            except OperationalError as exc:
                retryable = isinstance(
                    exc.orig, pg_errors.DeadlockDetected | pg_errors.SerializationFailure
                )
                if not retryable or attempt == _RETRIES:
                    raise
                log.warning("softphone batch retried after %s", type(exc.orig).__name__)
        raise AssertionError("unreachable")


def _done(request: _Request, outcomes: list[EventOutcome]) -> None:
    if not request.future.done():
        request.future.set_result(outcomes)


def _fail(request: _Request, exc: BaseException) -> None:
    if not request.future.done():
        request.future.set_exception(exc)
