"""SoftPhone call events: store a batch, then apply it to the numbers, set-based.

One batch is one transaction of three statements, whatever its size (up to ``MAX_BATCH``):

1. **store** - resolve every event's number and project and ``INSERT ... ON CONFLICT (event_id)
   DO NOTHING`` into ``call_events`` (unknown numbers too, with ``matched = false``). Events
   already stored come back as duplicates and have no effect: that is the idempotency.
2. **lock** - ``SELECT ... FOR NO KEY UPDATE`` the touched numbers in id order. Concurrent
   batches on the same number serialise here (in id order: no deadlock), and the next
   statement, which starts after the lock is granted, sees the other batch's events.
   (``NO KEY UPDATE`` because the call_events foreign key holds ``KEY SHARE`` on the number.)
   With ``skip_locked`` the lock never waits: a number another transaction holds makes the
   call raise ``NumbersBusy`` (naming the busy numbers) so the caller can roll back and set
   aside only the events that need them (the webhook's group commit, api/event_batcher.py).
3. **apply** - one ``UPDATE phone_numbers ... FROM (aggregates)`` whose audit rows are inserted
   by the same statement (a data-modifying CTE), one row per number whose status changed.

Project resolution (which row of a number an event is about; a number may sit in several
projects): the event's ``project_id`` and/or ``project_code`` if given (both must agree); else the
number's row in a live project created most recently (``created_at``, then ``id``) - the
campaign the number was last loaded into. ``updated_at`` is deliberately not used: every event
moves it, so the resolution would depend on arrival order. Rows in deleted projects never match.
An event whose number (or named project) is unknown is stored unmatched and changes nothing.

Ordering rule - the state after any set of events is the same whatever order or batching they
arrive in, because every field is a function of the *set* of stored events:

* ``call_attempts``: + the number of distinct ``call_ended`` events (each counted once, when
  first stored; addition commutes). Imported attempts are kept as the base.
* ``last_call_at``: ``GREATEST`` of itself and every ``call_ended``'s ``occurred_at``.
* ``status``: the status of the *winning* status event of the number, recomputed from its stored
  ``call_started`` / ``call_result`` events whenever a batch brings one. The winner is the maximum
  of ``(call_at, is_result, occurred_at, event_id)``, where ``call_at`` is the earliest
  ``occurred_at`` among the events of the same call (``call_id``; an event without one is a call
  of its own). So the latest call wins, and within one call a result beats its start even if
  the softphone stamped it earlier (clock skew) or it arrived first: a ``call_started`` that
  arrives late never reopens a finished call, while the start of a *newer* call does.
  ``call_started`` means ``in_progress``; ``call_result`` carries ``success|failed|no_answer``;
  ``call_ended`` does not touch the status. A status set by hand stands until the next
  status event for the number arrives.
* ...and the winner's status is applied only along an edge the one transition table allows
  (``models/number_transitions.py``, the API's rule too): ``success`` is final, ``failed`` only
  goes back to ``new`` by hand, so no SoftPhone event turns a success into a failure or reopens
  a failed number. The event is still stored (and counts its call attempt). The one case where
  arrival order matters: two calls of one number ending in different final results - the one
  applied first stands; both stay in ``call_events``.
* ``result_data``: the stored value ``||`` the merge of every ``call_result``'s ``result_data``
  in winner order (so the winning result's keys are on top). Re-merging the whole set each
  time makes it order-independent: keys no event ever set (e.g. imported ones) are kept.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, text

from models.dialing import next_attempt
from models.dialing.dnc import may_opt_out, record_opt_outs
from models.dialing.next_attempt import gap_sql, next_attempt_sql, rule_sql
from models.number_transitions import allowed_sql

MAX_BATCH = 1000
SYSTEM_ACTOR = "system:softphone"
STATUS_ACTION = "softphone_status"

# Outcomes of one event (the webhook reports them per index).
ACCEPTED = "accepted"
DUPLICATE = "duplicate"
UNMATCHED = "unmatched"

UNKNOWN_NUMBER = "unknown number"
UNKNOWN_PROJECT = "unknown project"
NOT_IN_PROJECT = "number not in project"


@dataclass(frozen=True, slots=True)
class EventIn:
    """A validated event: phone already E.164, occurred_at timezone-aware."""

    event_id: str
    event_type: str
    phone_number: str
    occurred_at: dt.datetime
    payload: str  # the event as received, JSON text (stored as jsonb)
    project_id: int | None = None
    project_code: str | None = None


@dataclass(frozen=True, slots=True)
class EventOutcome:
    event_id: str
    result: str  # ACCEPTED | DUPLICATE | UNMATCHED
    reason: str | None = None
    phone_number_id: int | None = None
    project_id: int | None = None


class NumbersBusy(RuntimeError):
    """Some numbers of the batch are locked by another transaction (``skip_locked``); the
    caller must roll back. ``number_of``: event id -> number id of the batch's new events."""

    def __init__(self, busy: frozenset[int], number_of: dict[str, int]) -> None:
        super().__init__(f"{len(busy)} number(s) locked by another transaction")
        self.busy = busy
        self.number_of = number_of

    def blocks(self, events: Sequence[EventIn]) -> bool:
        """Does any of these events need a busy number?"""
        return any(self.number_of.get(e.event_id) in self.busy for e in events)


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    events: list[EventOutcome]  # aligned with the input
    numbers_updated: int
    status_changes: int


# 1. Resolve numbers and projects, store, report which rows were new. `resolved` is referenced
# twice, so PostgreSQL materialises it once. Rows are inserted in event_id order so two
# overlapping batches take the unique-index locks in the same order (no deadlock).
_STORE = text(
    """
WITH input AS (
    SELECT *
    FROM unnest(
        CAST(:event_id AS text[]), CAST(:event_type AS text[]), CAST(:phone AS text[]),
        CAST(:occurred_at AS timestamptz[]), CAST(:payload AS text[]),
        CAST(:project_id AS bigint[]), CAST(:project_code AS text[])
    ) AS t(event_id, event_type, phone, occurred_at, payload, project_id, project_code)
),
resolved AS (
    SELECT i.*, num.id AS number_id, num.project_id AS number_project_id,
           named.id AS named_project_id
    FROM input i
    LEFT JOIN LATERAL (
        SELECT pn.id, pn.project_id
        FROM phone_numbers pn
        JOIN projects p ON p.id = pn.project_id AND NOT p.is_deleted
        WHERE pn.phone_number = i.phone
          AND (i.project_id IS NULL OR pn.project_id = i.project_id)
          AND (i.project_code IS NULL OR p.code = i.project_code)
        ORDER BY pn.created_at DESC, pn.id DESC
        LIMIT 1
    ) num ON true
    LEFT JOIN LATERAL (
        SELECT p.id
        FROM projects p
        WHERE (i.project_id IS NOT NULL OR i.project_code IS NOT NULL) AND NOT p.is_deleted
          AND (i.project_id IS NULL OR p.id = i.project_id)
          AND (i.project_code IS NULL OR p.code = i.project_code)
        LIMIT 1
    ) named ON true
),
stored AS (
    INSERT INTO call_events (event_id, event_type, phone_number, phone_number_id, project_id,
                             matched, payload, occurred_at)
    SELECT event_id, event_type, phone, number_id,
           coalesce(number_project_id, named_project_id),
           number_id IS NOT NULL, CAST(payload AS jsonb), occurred_at
    FROM resolved
    ORDER BY event_id
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id
)
SELECT r.event_id, s.event_id IS NOT NULL AS inserted, r.number_id,
       coalesce(r.number_project_id, r.named_project_id) AS project_id,
       (r.project_id IS NOT NULL OR r.project_code IS NOT NULL) AS project_named,
       r.named_project_id IS NOT NULL AS project_found
FROM resolved r
LEFT JOIN stored s ON s.event_id = r.event_id
"""
)

_LOCK = text(
    "SELECT id FROM phone_numbers WHERE id = ANY(CAST(:ids AS bigint[])) "
    "ORDER BY id FOR NO KEY UPDATE"
)
_LOCK_SKIP = text(
    "SELECT id FROM phone_numbers WHERE id = ANY(CAST(:ids AS bigint[])) "
    "ORDER BY id FOR NO KEY UPDATE SKIP LOCKED"
)
# The transition table as SQL: the status the number has -> the winner's status.
_ALLOWED = allowed_sql("pn.status", "w.status")

# 3. Apply the new matched events (passed in as arrays) to their numbers. `hist` reads the
# stored status events of numbers that got one (index call_events(phone_number_id, occurred_at));
# `winner` and `merged` implement the ordering rule of the module docstring.
_APPLY = text(
    f"""
WITH new_events AS (
    SELECT *
    FROM unnest(CAST(:number_id AS bigint[]), CAST(:event_type AS text[]),
                CAST(:occurred_at AS timestamptz[]))
         AS t(number_id, event_type, occurred_at)
),
per_number AS (
    SELECT number_id,
           count(*) FILTER (WHERE event_type = 'call_ended') AS ended,
           max(occurred_at) FILTER (WHERE event_type = 'call_ended') AS last_ended,
           bool_or(event_type <> 'call_ended') AS touches_status,
           bool_or(event_type = 'call_result') AS touches_result,
           -- an ended call or a result ends the lease and schedules the next attempt
           bool_or(event_type <> 'call_started') AS outcome
    FROM new_events
    GROUP BY number_id
),
hist AS (
    SELECT ce.phone_number_id AS number_id, ce.event_type, ce.occurred_at, ce.event_id,
           ce.payload,
           min(ce.occurred_at) OVER (
               PARTITION BY ce.phone_number_id, coalesce(ce.payload->>'call_id', ce.event_id)
           ) AS call_at
    FROM call_events ce
    WHERE ce.phone_number_id IN (SELECT number_id FROM per_number WHERE touches_status)
      AND ce.event_type IN ('call_started', 'call_result')
),
winner AS (
    SELECT DISTINCT ON (number_id) number_id,
           CASE WHEN event_type = 'call_result' THEN payload->>'status'
                ELSE 'in_progress' END AS status
    FROM hist
    ORDER BY number_id, call_at DESC, (event_type = 'call_result') DESC, occurred_at DESC,
             event_id DESC
),
merged AS (
    SELECT h.number_id,
           jsonb_object_agg(kv.key, kv.value
                            ORDER BY h.call_at, h.occurred_at, h.event_id) AS data
    FROM hist h
    CROSS JOIN LATERAL jsonb_each(
        CASE WHEN jsonb_typeof(h.payload->'result_data') = 'object'
             THEN h.payload->'result_data' ELSE '{{}}'::jsonb END
    ) AS kv
    WHERE h.event_type = 'call_result'
      AND h.number_id IN (SELECT number_id FROM per_number WHERE touches_result)
    GROUP BY h.number_id
),
-- The number's values after this batch: what the UPDATE writes and what the next attempt is
-- computed from (one UPDATE, one new row version per number).
calc AS (
    SELECT n.number_id, n.ended, n.outcome, pn.status AS old_status,
           CASE WHEN w.status IS NOT NULL AND {_ALLOWED} THEN w.status
                ELSE pn.status END AS status,
           greatest(pn.last_call_at, n.last_ended) AS last_call_at,
           CASE WHEN m.data IS NULL THEN pn.result_data
                ELSE coalesce(pn.result_data, '{{}}'::jsonb) || m.data END AS result_data,
           pn.project_id
    FROM per_number n
    JOIN phone_numbers pn ON pn.id = n.number_id
    LEFT JOIN winner w ON w.number_id = n.number_id
    LEFT JOIN merged m ON m.number_id = n.number_id
),
ruled AS (
    SELECT c.*, {gap_sql("pr")} AS gap, {rule_sql("c.status", "c.result_data", "pr")} AS rule
    FROM calc c
    LEFT JOIN project_dialing_rules pr ON pr.project_id = c.project_id
    WHERE c.outcome
),
planned AS (
    SELECT c.*, r.number_id IS NOT NULL AS reschedule,
           {next_attempt_sql("c.status", "c.last_call_at", "r.rule", "r.gap")} AS next_attempt_at
    FROM calc c
    LEFT JOIN ruled r ON r.number_id = c.number_id
),
updated AS (
    UPDATE phone_numbers pn
    SET status = c.status,
        call_attempts = pn.call_attempts + c.ended,
        last_call_at = c.last_call_at,
        result_data = c.result_data,
        leased_until = CASE WHEN c.reschedule THEN NULL ELSE pn.leased_until END,
        leased_by = CASE WHEN c.reschedule THEN NULL ELSE pn.leased_by END,
        next_attempt_at = CASE WHEN c.reschedule THEN c.next_attempt_at
                               ELSE pn.next_attempt_at END
    FROM planned c
    WHERE pn.id = c.number_id
      -- No write (no new row version, no index churn) when nothing changes, e.g. the late
      -- start of an old call.
      AND (c.ended > 0
           OR c.status IS DISTINCT FROM pn.status
           OR c.result_data IS DISTINCT FROM pn.result_data
           OR c.reschedule AND (pn.leased_until IS NOT NULL OR pn.leased_by IS NOT NULL
                                OR c.next_attempt_at IS DISTINCT FROM pn.next_attempt_at))
    RETURNING pn.id, pn.project_id, c.old_status, pn.status AS new_status
),
audited AS (
    INSERT INTO audit_log (actor, action, entity_type, entity_id, changes)
    SELECT '{SYSTEM_ACTOR}', '{STATUS_ACTION}', 'phone_number', id,
           jsonb_build_object('status', jsonb_build_array(old_status, new_status),
                              'project_id', project_id)
    FROM updated
    WHERE old_status IS DISTINCT FROM new_status
    RETURNING 1
)
SELECT (SELECT count(*) FROM updated) AS numbers_updated,
       (SELECT count(*) FROM audited) AS status_changes
"""
)


def store_and_apply(
    conn: Connection, events: Sequence[EventIn], *, skip_locked: bool = False
) -> BatchOutcome:
    """Store a batch and apply its new matched events; the caller commits (or rolls back).

    Event ids repeated inside the batch count once: later copies are reported as duplicates.
    `skip_locked`: raise NumbersBusy instead of waiting for numbers locked elsewhere.
    """
    if len(events) > MAX_BATCH:
        raise ValueError(f"at most {MAX_BATCH} events per batch, got {len(events)}")
    first: dict[str, EventIn] = {}
    for event in events:
        first.setdefault(event.event_id, event)
    unique = list(first.values())
    if not unique:
        return BatchOutcome([], 0, 0)

    rows = conn.execute(
        _STORE,
        {
            "event_id": [e.event_id for e in unique],
            "event_type": [e.event_type for e in unique],
            "phone": [e.phone_number for e in unique],
            "occurred_at": [e.occurred_at for e in unique],
            "payload": [e.payload for e in unique],
            "project_id": [e.project_id for e in unique],
            "project_code": [e.project_code for e in unique],
        },
    ).all()
    by_id: dict[str, EventOutcome] = {}
    applied: list[EventIn] = []
    number_of: dict[str, int] = {}
    for row in rows:
        if not row.inserted:
            by_id[row.event_id] = EventOutcome(
                row.event_id, DUPLICATE, None, row.number_id, row.project_id
            )
        elif row.number_id is None:
            reason = UNKNOWN_NUMBER
            if row.project_named:
                reason = NOT_IN_PROJECT if row.project_found else UNKNOWN_PROJECT
            by_id[row.event_id] = EventOutcome(
                row.event_id, UNMATCHED, reason, None, row.project_id
            )
        else:
            by_id[row.event_id] = EventOutcome(
                row.event_id, ACCEPTED, None, row.number_id, row.project_id
            )
            applied.append(first[row.event_id])
            number_of[row.event_id] = row.number_id

    numbers_updated = status_changes = 0
    if applied:
        # Every touched number, even for call_ended alone: a multi-row UPDATE takes row locks in
        # no particular order, so only rows locked beforehand in id order are deadlock-free.
        ids = sorted(set(number_of.values()))
        if skip_locked:
            got = set(conn.execute(_LOCK_SKIP, {"ids": ids}).scalars())
            if len(got) < len(ids):
                raise NumbersBusy(frozenset(ids) - got, number_of)
        else:
            conn.execute(_LOCK, {"ids": ids})
        counts = conn.execute(
            _APPLY,
            {
                "number_id": [number_of[e.event_id] for e in applied],
                "event_type": [e.event_type for e in applied],
                "occurred_at": [e.occurred_at for e in applied],
                **next_attempt.PARAMS,
            },
        ).one()
        numbers_updated, status_changes = counts.numbers_updated, counts.status_changes
        # An opt-out result lists the number for its project at once (models/dialing/dnc.py).
        # The statement only runs when a result's text can hold the flag at all.
        record_opt_outs(
            conn,
            [
                e.event_id
                for e in applied
                if e.event_type == "call_result" and may_opt_out(e.payload)
            ],
            SYSTEM_ACTOR,
        )

    seen: set[str] = set()
    outcomes: list[EventOutcome] = []
    for event in events:
        outcome = by_id[event.event_id]
        if event.event_id in seen:  # a repeat inside this very batch
            outcome = EventOutcome(
                event.event_id, DUPLICATE, None, outcome.phone_number_id, outcome.project_id
            )
        seen.add(event.event_id)
        outcomes.append(outcome)
    return BatchOutcome(outcomes, numbers_updated, status_changes)
