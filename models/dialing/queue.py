"""The dial queue: which numbers of a project may be dialled now, and handing them out.

Eligibility is ONE predicate, built here from named parts (`Conditions`), used by the lease, the
queue-state counts and the reset. A number is eligible when all hold:

* its project is active and not deleted (a constant per project, folded in here);
* `not_final`: status is not `success`, and the number's outcome (status, or the finer
  `result_data.outcome`) is not one the project's rules call final;
* `below_max`: `call_attempts` < the project's `max_attempts`;
* `retry_reached`: `next_attempt_at` is NULL or reached;
* `gap_ok`: the last call (`last_call_at`) is at least `min_gap_seconds` ago;
* `not_dnc`: no active do-not-call entry (global or the project's);
* `callable`: callable now in the number's local time (the time rules of
  eligibility.callable_condition; its DNC half is `not_dnc`);
* `not_leased`: `leased_until` is NULL or past - an expired lease frees the number by itself.

`next_attempt_at` is computed by `reschedule` whenever an outcome arrives (the SoftPhone webhook,
a PATCH of the status, a release with an outcome), so recycling needs no sweep job.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Text,
    and_,
    cast,
    false,
    func,
    literal_column,
    not_,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.orm import Session

from models.dialing import next_attempt, policy
from models.dialing.eligibility import dnc_listed, time_condition
from models.dialing.next_attempt import gap_sql, next_attempt_sql, rule_sql
from models.dialing.queue_rules import DEFAULTS, OUTCOMES, Rules
from models.tables import PhoneNumber, Project

P = PhoneNumber.__table__.c
T = PhoneNumber.__table__
# Literal SQL, not a bound parameter: the planner must see it to use the partial index
# ix_phone_numbers_dial_queue (WHERE status <> 'success').
NOT_SUCCESS = text("phone_numbers.status <> 'success'")
PRIORITY_DESC = P.priority.desc()


_REFINED = literal_column(
    "CASE WHEN phone_numbers.status IN ('no_answer', 'failed') AND "
    "phone_numbers.result_data->>'outcome' IN ("
    + ", ".join(f"'{o}'" for o in OUTCOMES)
    + ") THEN phone_numbers.result_data->>'outcome' ELSE phone_numbers.status END"
)


def outcome_key() -> ColumnElement[str]:
    """The number's outcome (models/dialing/queue_rules.py): the finer result_data.outcome of a
    no_answer/failed, else the status."""
    return _REFINED


@dataclass(frozen=True)
class Conditions:
    project_active: bool
    not_final: ColumnElement[bool]
    below_max: ColumnElement[bool]
    retry_reached: ColumnElement[bool]
    gap_ok: ColumnElement[bool]
    not_dnc: ColumnElement[bool]
    callable: ColumnElement[bool]
    not_leased: ColumnElement[bool]

    def eligible(self) -> ColumnElement[bool]:
        if not self.project_active:
            return false()
        return and_(
            self.not_final,
            self.below_max,
            self.retry_reached,
            self.gap_ok,
            self.not_dnc,
            self.callable,
            self.not_leased,
        )


def project_is_active(project: Project) -> bool:
    return project.status == "active" and not project.is_deleted


def conditions(
    session: Session,
    project: Project,
    rules: Rules,
    now: dt.datetime,
    config: policy.PolicyConfig,
) -> Conditions:
    not_final: ColumnElement[bool] = NOT_SUCCESS
    finals = sorted(o for o in OUTCOMES if rules.is_final(o))
    if finals:
        not_final = and_(not_final, outcome_key().not_in(finals))
    gap_start = now - dt.timedelta(seconds=rules.min_gap_seconds)
    return Conditions(
        project_active=project_is_active(project),
        not_final=not_final,
        below_max=P.call_attempts < rules.max_attempts,
        retry_reached=or_(P.next_attempt_at.is_(None), P.next_attempt_at <= now),
        gap_ok=or_(P.last_call_at.is_(None), P.last_call_at <= gap_start)
        if rules.min_gap_seconds
        else true(),
        not_dnc=not_(dnc_listed(now)),
        callable=func.coalesce(time_condition(session, now, [project.id], config), False),
        not_leased=or_(P.leased_until.is_(None), P.leased_until < now),
    )


def order_tiers(order: str) -> list[ColumnElement[bool]]:
    """The hand-out order as tiers, each walked in (priority desc, id) order - the order of
    ix_phone_numbers_dial_queue - so no tier ever sorts the project's rows."""
    if order == "fresh_first":
        return [P.call_attempts == 0, P.call_attempts > 0]
    if order == "retries_first":
        return [P.call_attempts > 0, P.call_attempts == 0]
    return [true()]


@dataclass(frozen=True)
class Leased:
    id: int
    phone_number: str
    status_before: str
    call_attempts: int
    priority: int
    leased_until: dt.datetime


def lease(
    session: Session,
    project: Project,
    *,
    holder: str,
    count: int,
    lease_seconds: int,
    now: dt.datetime,
    config: policy.PolicyConfig,
    rules: Rules | None = None,
) -> list[Leased]:
    """Hand out up to `count` eligible numbers to `holder`; the caller commits at once.

    Each tier is one `SELECT ... FOR NO KEY UPDATE SKIP LOCKED` + `UPDATE`: rows another
    transaction is leasing right now are skipped, not waited for, and PostgreSQL re-checks the
    predicate on a row whose lease committed meanwhile, so a number goes to exactly one holder.
    (NO KEY: the lease changes no key, so it does not block call_events' foreign-key locks.)
    """
    rules = rules or DEFAULTS
    cond = conditions(session, project, rules, now, config)
    if not cond.project_active or count <= 0:
        return []
    until = now + dt.timedelta(seconds=lease_seconds)
    out: list[Leased] = []
    for tier in order_tiers(rules.hand_out_order):
        remaining = count - len(out)
        if remaining <= 0:
            break
        picked = (
            select(P.id, P.status)
            .where(P.project_id == project.id, cond.eligible(), tier)
            .order_by(PRIORITY_DESC, P.id)
            .limit(remaining)
            .with_for_update(skip_locked=True, key_share=True)
            .cte("picked")
        )
        stmt = (
            update(T)
            .where(T.c.id == picked.c.id)
            .values(status="in_progress", leased_until=until, leased_by=holder)
            .returning(T.c.id, T.c.phone_number, picked.c.status, T.c.call_attempts, T.c.priority)
        )
        # UPDATE ... RETURNING comes back in the order rows were updated, not the CTE's:
        # hand them out in the tier's order (priority first, then id).
        rows = sorted(session.execute(stmt).all(), key=lambda r: (-r[4], r[0]))
        out.extend(Leased(r[0], r[1], r[2], r[3], r[4], until) for r in rows)
    return out


# Recompute next_attempt_at (and end any lease) for numbers an outcome just reached. One rule for
# the webhook, the PATCH and a release with an outcome; the project's rules are joined in, the
# defaults stand in for a project without a row.
_RESCHEDULE = text(
    f"""
WITH r AS (
    SELECT pn.id, {gap_sql("pr")} AS gap,
           {rule_sql("pn.status", "pn.result_data", "pr")} AS rule
    FROM phone_numbers pn
    LEFT JOIN project_dialing_rules pr ON pr.project_id = pn.project_id
    WHERE pn.id = ANY(CAST(:ids AS bigint[]))
)
UPDATE phone_numbers pn
SET leased_until = NULL,
    leased_by = NULL,
    next_attempt_at = {next_attempt_sql("pn.status", "pn.last_call_at", "r.rule", "r.gap")}
FROM r
WHERE pn.id = r.id
"""
)


def reschedule(conn: Connection | Session, number_ids: Sequence[int]) -> None:
    """An outcome reached these numbers (already locked or updated in this transaction).
    (The webhook does this inside its own UPDATE: models/call_events.py.)"""
    if not number_ids:
        return
    conn.execute(_RESCHEDULE, {"ids": sorted(set(number_ids)), **next_attempt.PARAMS})


# Release: status a lease gave back without an outcome returns to (the lifecycle's "released"
# edge in_progress -> new; a number called before goes back to no_answer, its retry state).
_RELEASED_STATUS = literal_column(
    "CASE WHEN phone_numbers.call_attempts = 0 THEN 'new' ELSE 'no_answer' END"
)
STATUS_OF_OUTCOME = {"success": "success", "no_answer": "no_answer", "busy": "no_answer",
                     "voicemail": "no_answer", "failed": "failed"}  # fmt: skip


def release(
    session: Session,
    project_id: int,
    *,
    holder: str,
    ids: Sequence[int],
    outcome: str | None,
    now: dt.datetime,
) -> list[tuple[int, str, str]]:
    """Give back the holder's leased numbers; returns (id, status before, status after).
    Numbers not leased by `holder` (never, or re-leased after expiry) are left alone."""
    if not ids:
        return []
    values: dict[str, Any] = {"leased_until": None, "leased_by": None}
    if outcome is None:
        values["status"] = _RELEASED_STATUS
    else:
        values.update(
            status=STATUS_OF_OUTCOME[outcome],
            call_attempts=P.call_attempts + 1,
            last_call_at=now,
        )
        if outcome in OUTCOMES:
            values["result_data"] = func.coalesce(P.result_data, literal_column("'{}'::jsonb")).op(
                "||"
            )(func.jsonb_build_object("outcome", cast(outcome, Text)))
    stmt = (
        update(T)
        .where(
            P.project_id == project_id,
            P.id.in_(sorted(set(ids))),
            P.leased_by == holder,
            P.status == "in_progress",
        )
        .values(**values)
        .returning(T.c.id, T.c.status)
    )
    rows = session.execute(stmt).all()
    if outcome is not None:
        reschedule(session, [r[0] for r in rows])
    return [(r[0], "in_progress", r[1]) for r in rows]
