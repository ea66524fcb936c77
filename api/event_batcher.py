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

Locks: one busy number must not hold up anybody else's events. A group used to wait for every
number it touched, so a bulk update of project A (row locks held for seconds) stalled the
events of project B that happened to share A's group - and, with one flusher per process, every
group behind it (9.2 s measured). Now there are two lanes:

* the **group lane** never waits for a row: it locks its numbers ``SKIP LOCKED``
  (``NumbersBusy`` when one is taken); when numbers are busy, only the requests that need them
  leave the group and the others are stored at once in a new group transaction. Checking is
  free: the lock statement runs anyway, and SKIP LOCKED costs nothing when nothing is locked.
  For waits SKIP LOCKED cannot step around - a ``FOR UPDATE`` row lock (a delete, a key update)
  that the call_events foreign-key check waits for, a table lock, an uncommitted insert of the
  same event id - the group waits at most ``group_lock_timeout`` (default 0.2 s: far above a
  concurrent group's few milliseconds, far below a bulk update's seconds; ``SET LOCAL`` once per
  transaction, one round trip per group, not per request), then is halved until the request
  that needs the lock is found (log2 of the group's size tries, at most).
* the **waiting lane** takes the requests set aside, grouped the same way, and really waits -
  at most ``lock_timeout`` (NUMBASE_DB_LOCK_TIMEOUT_SECONDS). When the lock is released they are
  stored and applied as usual; when the wait times out, a ``SKIP LOCKED`` pass stores those of
  them whose numbers are free by now, and the rest fail with PostgreSQL's lock-timeout error,
  which the API answers 503 "timed out waiting for a lock on phone_numbers" (api/errors.py).
  A request waits at most about twice the lock timeout (its group's wait plus the one before).

Polling instead of waiting was rejected: a retry costs a whole store (~3 ms of database CPU)
per request per try, and a hundred events waiting on a long lock would burn a core. A waiting
group costs one connection and one thread, however many requests it holds.

No background task: the waiting requests themselves take turns as flushers (at most
``MAX_FLUSHERS`` at once per lane and process), each flush shielded from its caller's
cancellation so a client that hangs up cannot strand the others' answers.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from psycopg import errors as pg_errors
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, OperationalError

from api.observability import WEBHOOK_REQUESTS_GROUPED, WEBHOOK_TRANSACTIONS
from models.call_events import MAX_BATCH, EventIn, EventOutcome, NumbersBusy, store_and_apply
from models.db import milliseconds

log = logging.getLogger("numbase.api.softphone")

MAX_FLUSHERS = 1  # transactions at once per lane and process: the next group fills meanwhile
_RETRIES = 3  # deadlocks cannot happen by design (models/call_events.py); belt and braces
_SPLITS = 3  # group-lane rounds after NumbersBusy before the rest go to the waiting lane


@dataclass(eq=False)
class _Request:
    events: Sequence[EventIn]
    future: asyncio.Future[list[EventOutcome]]
    waiting: bool = False  # set aside to the waiting lane


@dataclass(eq=False)
class GroupStats:
    """Counters for /metrics and tests: how much coalescing happened."""

    transactions: int = 0
    requests: int = 0
    isolated_retries: int = 0
    set_aside: int = 0  # requests moved to the waiting lane (a number of theirs was busy)
    lock_timeouts: int = 0  # requests failed after waiting the whole lock timeout


@dataclass(eq=False)
class _Lane:
    name: str
    lock_ms: int  # SET LOCAL lock_timeout of its transactions (0: wait forever)
    skip_locked: bool
    pending: deque[_Request] = field(default_factory=deque)
    flushers: int = 0


class EventBatcher:
    def __init__(
        self,
        engine: Engine,
        *,
        max_events: int = MAX_BATCH,
        group_lock_timeout: float = 0.2,
        lock_timeout: float = 10.0,
    ) -> None:
        self._engine = engine
        self._max_events = max_events
        self._group = _Lane("group", milliseconds(group_lock_timeout) or 1, skip_locked=True)
        self._waiting = _Lane("waiting", milliseconds(lock_timeout), skip_locked=False)
        self._turn: asyncio.Future[None] | None = None  # done when a flush ends
        self.stats = GroupStats()

    async def submit(self, events: Sequence[EventIn]) -> list[EventOutcome]:
        """Store and apply `events` (one request's, in order); their outcomes, once committed."""
        if not events:
            return []
        loop = asyncio.get_running_loop()
        request = _Request(events, loop.create_future())
        self._group.pending.append(request)
        while not request.future.done():
            lane = self._free_lane(request)
            if lane is not None:
                lane.flushers += 1
                await asyncio.shield(loop.create_task(self._flush(lane, self._take(lane))))
                continue
            if self._turn is None or self._turn.done():
                self._turn = loop.create_future()
            await asyncio.wait({request.future, self._turn}, return_when=asyncio.FIRST_COMPLETED)
        return request.future.result()

    def _free_lane(self, request: _Request) -> _Lane | None:
        """The lane this caller may flush now. Only a caller whose own request waits may take
        the waiting lane: a long wait must never sit on a request bound for the group lane."""
        if self._group.pending and self._group.flushers < MAX_FLUSHERS:
            return self._group
        if request.waiting and self._waiting.pending and self._waiting.flushers < MAX_FLUSHERS:
            return self._waiting
        return None

    def _take(self, lane: _Lane) -> list[_Request]:
        """The oldest pending requests, up to max_events events (at least one request)."""
        group = [lane.pending.popleft()]
        size = len(group[0].events)
        while lane.pending and size + len(lane.pending[0].events) <= self._max_events:
            request = lane.pending.popleft()
            size += len(request.events)
            group.append(request)
        return group

    async def _flush(self, lane: _Lane, group: list[_Request]) -> None:
        try:
            if lane is self._group:
                await self._store_group(group)
            else:
                await self._store_waiting(group)
        finally:
            # Here, not in submit(): a cancelled caller must not free the slot early.
            lane.flushers -= 1
            if self._turn is not None and not self._turn.done():
                self._turn.set_result(None)

    def _set_aside(self, requests: list[_Request]) -> None:
        self.stats.set_aside += len(requests)
        for request in requests:
            request.waiting = True
        self._waiting.pending.extend(requests)

    async def _store_group(self, group: list[_Request]) -> None:
        parts = [group]
        while parts:
            part = parts.pop()
            for _ in range(_SPLITS):
                try:
                    await self._store(self._group, part)
                    break
                except NumbersBusy as busy:
                    self._set_aside([r for r in part if busy.blocks(r.events)])
                    part = [r for r in part if not busy.blocks(r.events)]
                    if not part:
                        break
                except OperationalError:  # a lock timeout (_store handles the rest)
                    # A wait SKIP LOCKED cannot avoid: a FOR UPDATE row lock (a delete, a key
                    # update) that the call_events foreign-key check must wait for, a table
                    # lock, an uncommitted copy of an event id. PostgreSQL does not say which
                    # request needs it: halve the part until it is found (each try waits at
                    # most group_lock_timeout), so the others still go through.
                    if len(part) == 1:
                        self._set_aside(part)
                    else:
                        half = len(part) // 2
                        parts += [part[half:], part[:half]]
                    break
            else:
                self._set_aside(part)

    async def _store_waiting(self, group: list[_Request]) -> None:
        try:
            await self._store(self._waiting, group)
            return
        except OperationalError as exc:
            if not isinstance(exc.orig, pg_errors.LockNotAvailable):
                raise
            timeout = exc
        # The wait timed out: whoever's numbers are free by now is stored, the rest fail.
        for _ in range(_SPLITS):
            try:
                await self._store(self._group, group)
                return
            except NumbersBusy as busy:
                blocked = [r for r in group if busy.blocks(r.events)]
                group = [r for r in group if not busy.blocks(r.events)]
                self._fail_timed_out(blocked, timeout)
            except OperationalError as exc:
                if not isinstance(exc.orig, pg_errors.LockNotAvailable):
                    raise
                break
            if not group:
                return
        self._fail_timed_out(group, timeout)

    def _fail_timed_out(self, requests: list[_Request], exc: BaseException) -> None:
        self.stats.lock_timeouts += len(requests)
        if requests:
            log.warning(
                "softphone: %d request(s) timed out waiting for a lock: %s", len(requests), exc
            )
        for request in requests:
            _fail(request, exc)

    async def _store(self, lane: _Lane, group: list[_Request]) -> None:
        """One transaction for the group; NumbersBusy and lock timeouts go to the caller."""
        events = [e for r in group for e in r.events]
        try:
            outcomes = await asyncio.to_thread(self._commit, lane, events)
        except NumbersBusy:
            raise
        except OperationalError as exc:
            if isinstance(exc.orig, pg_errors.LockNotAvailable):
                raise
            for request in group:  # the database is gone: every request fails alike
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
                    _done(request, await asyncio.to_thread(self._commit, lane, request.events))
                except NumbersBusy:
                    self._set_aside([request])
                except DBAPIError as single:
                    if lane is self._group and _lock_timeout(single):
                        self._set_aside([request])
                    else:
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

    def _commit(self, lane: _Lane, events: Sequence[EventIn]) -> list[EventOutcome]:
        for attempt in range(1, _RETRIES + 1):
            try:
                with self._engine.connect() as conn:
                    # The lane's lock wait for this transaction only (the connection keeps its
                    # own default); a literal, so it needs no parameter round trip.
                    conn.execute(text(f"SET LOCAL lock_timeout = {int(lane.lock_ms)}"))
                    outcome = store_and_apply(conn, events, skip_locked=lane.skip_locked)
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


def _lock_timeout(exc: DBAPIError) -> bool:
    return isinstance(exc.orig, pg_errors.LockNotAvailable)


def _done(request: _Request, outcomes: list[EventOutcome]) -> None:
    if not request.future.done():
        request.future.set_result(outcomes)


def _fail(request: _Request, exc: BaseException) -> None:
    if not request.future.done():
        request.future.set_exception(exc)
