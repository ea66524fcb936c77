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
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Dialect,
    Integer,
    String,
    literal_column,
    select,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import TIMESTAMP

from models.dialing import policy, queue
from models.dialing.eligibility import TimeInputs, load_time_inputs, time_condition_of
from models.dialing.queue_rules import Rules, from_row
from models.tables import ProjectDialingRules

R = ProjectDialingRules.__table__
_BUILD = threading.Lock()


def _param(name: str, sql_type: str, type_: Any) -> ColumnElement[Any]:
    return literal_column(f"CAST(%({name})s AS {sql_type})", type_)


# The per-call values of the compiled lease statement: driver placeholders, bound at execution.
PLACEHOLDERS = queue.LeaseValues(
    now=_param("dq_now", "TIMESTAMP WITH TIME ZONE", TIMESTAMP(timezone=True)),
    until=_param("dq_until", "TIMESTAMP WITH TIME ZONE", TIMESTAMP(timezone=True)),
    count=_param("dq_count", "INTEGER", Integer()),
    holder=_param("dq_holder", "VARCHAR", String()),
    user_id=_param("dq_user_id", "BIGINT", BigInteger()),
    actor=_param("dq_actor", "VARCHAR", String()),
)


@dataclass(frozen=True)
class Minute:
    time_cond: ColumnElement[bool]
    lease_sql: str  # the lease statement for this minute, compiled, PLACEHOLDERS unbound


@dataclass
class Plan:
    project_id: int
    rules: Rules
    inputs: TimeInputs
    expires: float  # time.monotonic()
    _by_minute: dict[dt.datetime, Minute] = field(default_factory=dict)

    def minute(self, now: dt.datetime, config: policy.PolicyConfig, dialect: Dialect) -> Minute:
        key = now.replace(second=0, microsecond=0)
        got = self._by_minute.get(key)
        if got is None:
            # One thread builds it; the others in the same minute wait for it rather than
            # all running the same zone checks at once.
            with _BUILD:
                got = self._by_minute.get(key)
                if got is None:
                    got = self._build(now, config, dialect)
                    self._by_minute = {key: got}  # one minute at a time
        return got

    def _build(self, now: dt.datetime, config: policy.PolicyConfig, dialect: Dialect) -> Minute:
        cond = time_condition_of(self.inputs, now, config)
        stmt = queue.lease_statement(self.project_id, self.rules, cond, PLACEHOLDERS, audited=True)
        # Literal binds: the zone lists and rules go into the text once a minute, instead of
        # SQLAlchemy building the statement and psycopg dumping ~600 zones on every lease
        # (together ~4 ms of the API's CPU per lease, cProfile).
        sql = str(stmt.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
        # The compiler escapes every % of the text for the driver's format style, the
        # placeholders' too: undo it for those alone (a literal % stays escaped, as it must).
        sql = sql.replace("%%(dq_", "%(dq_")
        return Minute(cond, sql)

    def time_condition(self, now: dt.datetime, config: policy.PolicyConfig) -> ColumnElement[bool]:
        return self.minute(now, config, postgresql.dialect()).time_cond

    def lease(
        self,
        conn: Connection,
        *,
        holder: str,
        count: int,
        lease_seconds: int,
        now: dt.datetime,
        config: policy.PolicyConfig,
        audit: dict[str, Any],
    ) -> list[queue.Leased]:
        """`queue.lease`, with the statement compiled for this minute: one round trip."""
        if count <= 0:
            return []
        until = now + dt.timedelta(seconds=lease_seconds)
        params = {
            "dq_now": now, "dq_until": until, "dq_count": count, "dq_holder": holder,
            "dq_user_id": audit.get("user_id"), "dq_actor": audit.get("actor"),
        }  # fmt: skip
        sql = self.minute(now, config, conn.dialect).lease_sql
        return queue.leased_rows(conn.exec_driver_sql(sql, params).all(), until)


def read_plan(conn: Connection, project_id: int, now: dt.datetime, ttl: float) -> Plan:
    """Two small reads on a bare connection (the rules row, the time inputs)."""
    row = conn.execute(select(R).where(R.c.project_id == project_id)).one_or_none()
    return Plan(
        project_id=project_id,
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
