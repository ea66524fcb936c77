"""What a lease needs besides the rows, kept per process for a few seconds.

A lease is one statement (models/dialing/queue.py). Everything else it depends on is small and
changes rarely: the project's dial-queue rules, and the time rules' inputs (holidays, the
project's schedule, the ambiguous-zone sets), from which the "zones callable now" snapshot is
computed in Python (~600 zone checks, ~3 ms). Reading and computing them per lease cost more
than the lease itself, so a `PlanCache` keeps, per project:

* the rules and the time inputs, read at most every `ttl` seconds
  (`NUMBASE_DIAL_QUEUE_PLAN_CACHE_SECONDS`, default 5; 0 = read per lease);
* the time predicate built from them, per UTC minute - exact for that minute (the windows are
  whole minutes, and so are today's zone offsets), so caching it adds no staleness.

Staleness bound: a change to a project's rules, its schedule or the holidays reaches a lease of
another process at most `ttl` seconds later; the API process that made the change drops its
cache at once (`invalidate`). Everything that decides *which* rows may go is still read by the
lease statement itself, at that instant: the project's status and deletion, each number's
status, attempts, retry time, last call, lease and the do-not-call lists. A zone set created
after the read is treated as not callable until the next read (the safe side).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, Connection, select

from models.dialing import policy
from models.dialing.eligibility import TimeInputs, load_time_inputs, time_condition_of
from models.dialing.queue_rules import Rules, from_row
from models.tables import ProjectDialingRules

R = ProjectDialingRules.__table__
_BUILD = threading.Lock()


@dataclass
class Plan:
    rules: Rules
    inputs: TimeInputs
    expires: float  # time.monotonic()
    _by_minute: dict[dt.datetime, ColumnElement[bool]] = field(default_factory=dict)

    def time_condition(self, now: dt.datetime, config: policy.PolicyConfig) -> ColumnElement[bool]:
        minute = now.replace(second=0, microsecond=0)
        cond = self._by_minute.get(minute)
        if cond is None:
            # One thread builds it; the others in the same minute wait for it rather than
            # all running the same zone checks at once.
            with _BUILD:
                cond = self._by_minute.get(minute)
                if cond is None:
                    cond = time_condition_of(self.inputs, now, config)
                    self._by_minute = {minute: cond}  # one minute at a time
        return cond


def read_plan(conn: Connection, project_id: int, now: dt.datetime, ttl: float) -> Plan:
    """Two small reads on a bare connection (the rules row, the time inputs)."""
    row = conn.execute(select(R).where(R.c.project_id == project_id)).one_or_none()
    return Plan(
        rules=from_row(row),  # type: ignore[arg-type]  # a Row has the model's attributes
        inputs=load_time_inputs(conn, now, [project_id]),  # type: ignore[arg-type]
        expires=time.monotonic() + ttl,
    )


class PlanCache:
    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._plans: dict[int, Plan] = {}
        self._lock = threading.Lock()

    def get(self, conn: Connection, project_id: int, now: dt.datetime) -> Plan:
        plan = self._plans.get(project_id)
        if plan is not None and plan.expires > time.monotonic():
            return plan
        # Two threads may both read on expiry; either plan is current, the last one stays.
        fresh = read_plan(conn, project_id, now, self.ttl)
        if plan is not None and plan.inputs == fresh.inputs:
            # Unchanged inputs (the usual case): keep this minute's predicate, ~0.1-0.2 s of
            # zone checks on a busy machine, instead of rebuilding it every `ttl`.
            fresh._by_minute = plan._by_minute
        plan = fresh
        if self.ttl > 0:
            with self._lock:
                self._plans[project_id] = plan
        return plan

    def invalidate(self) -> None:
        """Something a plan is read from changed (rules, a schedule, a holiday)."""
        with self._lock:
            self._plans.clear()
