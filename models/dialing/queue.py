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
    Select,
    Text,
    and_,
    cast,
    false,
    func,
    insert,
    literal,
    literal_column,
    not_,
    null,
    or_,
    select,
    text,
    true,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import TIMESTAMP
from sqlalchemy.orm import Session

from models.dialing import next_attempt, policy
from models.dialing.eligibility import dnc_listed, time_condition
from models.dialing.next_attempt import gap_sql, next_attempt_sql, rule_sql
from models.dialing.queue_rules import DEFAULTS, OUTCOMES, Rules, from_row
from models.tables import DIAL_QUEUE_DUE, AuditLog, PhoneNumber, Project, ProjectDialingRules

P = PhoneNumber.__table__.c
T = PhoneNumber.__table__
Pr = Project.__table__.c
# Literal SQL, not a bound parameter: the planner must see it to use the partial index
# ix_phone_numbers_dial_queue (WHERE status <> 'success').
NOT_SUCCESS = text("phone_numbers.status <> 'success'")
PRIORITY_DESC = P.priority.desc()
# A key of ix_phone_numbers_dial_queue (models/tables.py), literal so the planner matches it:
# `DUE <= now` holds for every number neither leased nor waiting, and the btree tests it on the
# index entry, before fetching the row. Implied by retry_reached and not_leased, so it changes
# no result; it only lets the walk skip the numbers a worked project piles up at its front.
DUE = literal_column(DIAL_QUEUE_DUE, TIMESTAMP(timezone=True))


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
        return self.rows() if self.project_active else false()

    def rows(self) -> ColumnElement[bool]:
        """The parts on the number's row (the project's status aside)."""
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
    time_cond: ColumnElement[bool] | None = None,
) -> Conditions:
    """The parts of the predicate for `project` at `now`. `time_cond`: the time rules already
    built (models/dialing/queue_plan.py); None reads their inputs through `session`."""
    if time_cond is None:
        time_cond = time_condition(session, now, [project.id], config)
    return row_conditions(rules, now, time_cond, project_active=project_is_active(project))


def row_conditions(
    rules: Rules,
    now: dt.datetime | ColumnElement[dt.datetime],
    time_cond: ColumnElement[bool],
    *,
    project_active: bool = True,
) -> Conditions:
    """`now`: a moment, or a SQL expression of one (the lease's compiled statement binds it)."""
    not_final: ColumnElement[bool] = NOT_SUCCESS
    finals = sorted(o for o in OUTCOMES if rules.is_final(o))
    if finals:
        not_final = and_(not_final, outcome_key().not_in(finals))
    gap_start = (
        now - dt.timedelta(seconds=rules.min_gap_seconds)
        if isinstance(now, dt.datetime)
        else cast(now, TIMESTAMP(timezone=True))
        - func.make_interval(0, 0, 0, 0, 0, 0, rules.min_gap_seconds)
    )
    return Conditions(
        project_active=project_active,
        not_final=not_final,
        below_max=P.call_attempts < rules.max_attempts,
        retry_reached=or_(P.next_attempt_at.is_(None), P.next_attempt_at <= now),
        gap_ok=or_(P.last_call_at.is_(None), P.last_call_at <= gap_start)
        if rules.min_gap_seconds
        else true(),
        not_dnc=not_(dnc_listed(now)),
        callable=func.coalesce(time_cond, False),
        not_leased=or_(P.leased_until.is_(None), P.leased_until < now),
    )


def eligible_condition(
    session: Session,
    now: dt.datetime,
    project_ids: Sequence[int] | None,
    config: policy.PolicyConfig,
) -> ColumnElement[bool]:
    """The same eligibility over numbers of many projects (the numbers list's `eligible_now`):
    per group of projects sharing rules the parts of `row_conditions`, the defaults for
    projects without rules, and the project active and not deleted. `project_ids`: the
    projects the query can touch (None: any)."""
    stmt = select(ProjectDialingRules.__table__)
    if project_ids is not None:
        stmt = stmt.where(ProjectDialingRules.project_id.in_(list(project_ids)))
    stored = {row.project_id: from_row(row) for row in session.execute(stmt)}  # type: ignore[arg-type]
    time_cond = time_condition(session, now, project_ids, config)
    groups: dict[Any, list[int]] = {}
    for pid, rules in stored.items():
        key = (rules.max_attempts, rules.min_gap_seconds, tuple(sorted(rules.outcomes.items())))
        groups.setdefault(key, []).append(pid)
    branches = [
        and_(P.project_id.in_(sorted(pids)), row_conditions(stored[pids[0]], now, time_cond).rows())
        for pids in groups.values()
    ]
    default = row_conditions(DEFAULTS, now, time_cond).rows()
    branches.append(and_(P.project_id.not_in(sorted(stored)), default) if stored else default)
    return and_(_live(P.project_id), or_(*branches))


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


def _live(project_id: int | ColumnElement[int]) -> ColumnElement[bool]:
    """The project (an id, or the row's project_id column) is active and not deleted, read by
    the statement itself."""
    return (
        select(Pr.id)
        .where(Pr.id == project_id, Pr.status == "active", Pr.is_deleted.is_(False))
        .exists()
    )


def lease(
    session: Connection | Session,
    project: Project | int,
    *,
    holder: str,
    count: int,
    lease_seconds: int,
    now: dt.datetime,
    config: policy.PolicyConfig,
    rules: Rules | None = None,
    time_cond: ColumnElement[bool] | None = None,
    audit: dict[str, Any] | None = None,
) -> list[Leased]:
    """Hand out up to `count` eligible numbers to `holder` (one statement: `lease_statement`);
    the caller commits at once. `time_cond`: the time rules already built; None reads their
    inputs first. `audit`: the actor's audit_log fields (user_id or actor), None: no audit rows.
    The API runs the same statement compiled once a minute (models/dialing/queue_plan.py)."""
    rules = rules or DEFAULTS
    project_id = project if isinstance(project, int) else project.id
    if count <= 0:
        return []
    if time_cond is None:
        time_cond = time_condition(session, now, [project_id], config)  # type: ignore[arg-type]
    until = now + dt.timedelta(seconds=lease_seconds)
    A = AuditLog.__table__
    stmt = lease_statement(
        project_id, rules, time_cond,
        LeaseValues(
            now=literal(now, TIMESTAMP(timezone=True)),
            until=literal(until, TIMESTAMP(timezone=True)),
            count=literal(count),
            holder=literal(holder, T.c.leased_by.type),
            user_id=literal((audit or {}).get("user_id"), A.c.user_id.type),
            actor=literal((audit or {}).get("actor"), A.c.actor.type),
        ),
        audited=audit is not None,
    )  # fmt: skip
    return leased_rows(session.execute(stmt).all(), until)


def leased_rows(rows: Sequence[Any], until: dt.datetime) -> list[Leased]:
    # UPDATE ... RETURNING comes back in the order rows were updated, not the CTE's: hand them
    # out in the order's tiers, each in (priority desc, id) order.
    rows = sorted(rows, key=lambda r: (r[5], -r[4], r[0]))
    return [Leased(r[0], r[1], r[2], r[3], r[4], until) for r in rows]


@dataclass(frozen=True)
class LeaseValues:
    """The per-call values of a lease statement, as SQL (literals, or placeholders)."""

    now: ColumnElement[Any]
    until: ColumnElement[Any]
    count: ColumnElement[Any]
    holder: ColumnElement[Any]
    user_id: ColumnElement[Any]
    actor: ColumnElement[Any]


def lease_statement(
    project_id: int,
    rules: Rules,
    time_cond: ColumnElement[bool],
    v: LeaseValues,
    *,
    audited: bool,
) -> Select[Any]:
    """ONE statement: per tier of the order a `SELECT ... FOR NO KEY UPDATE SKIP LOCKED` CTE
    (a later tier takes what the earlier ones left of `count`), the UPDATE of the picked rows
    and (`audited`) one `dial_queue_lease` audit row per number. Rows another transaction is
    leasing right now are skipped, not waited for, and PostgreSQL re-checks the predicate on a
    row whose lease committed meanwhile, so a number goes to exactly one holder. (NO KEY: the
    lease changes no key, so it does not block call_events' foreign-key locks.) The project's
    status is read by the statement too: a paused or deleted project hands out nothing."""
    cond = row_conditions(rules, v.now, time_cond).rows()
    live = _live(project_id)
    tiers: list[Any] = []
    for i, tier in enumerate(order_tiers(rules.hand_out_order)):
        # LIMIT of a later tier: what the earlier ones left (0: its scan never starts).
        taken = [select(func.count()).select_from(t).scalar_subquery() for t in tiers]
        limit: Any = v.count - sum(taken) if taken else v.count
        tiers.append(
            select(P.id, P.status, literal(i).label("tier"))
            .where(P.project_id == project_id, v.now >= DUE, live, cond, tier)
            .order_by(PRIORITY_DESC, P.id)
            .limit(limit)
            .with_for_update(skip_locked=True, key_share=True)
            .cte(f"tier{i}")
        )
    picked = union_all(*(select(t) for t in tiers)).cte("picked") if len(tiers) > 1 else tiers[0]
    updated = (
        update(T)
        .where(T.c.id == picked.c.id)
        .values(status="in_progress", leased_until=v.until, leased_by=v.holder)
        .returning(
            T.c.id,
            T.c.phone_number,
            picked.c.status,
            T.c.call_attempts,
            T.c.priority,
            picked.c.tier,
        )  # fmt: skip
        .cte("updated")
    )
    stmt = select(updated)
    if audited:
        stmt = stmt.add_cte(_audit_rows(updated, v, project_id))
    return stmt


def _audit_rows(updated: Any, v: LeaseValues, project_id: int) -> Any:
    A = AuditLog.__table__
    changes = func.jsonb_build_object(
        "status", func.jsonb_build_array(updated.c.status, literal("in_progress")),
        "leased_by", func.jsonb_build_array(null(), v.holder),
        "project_id", literal(project_id),
    )  # fmt: skip
    return (
        insert(A)
        .from_select(
            ["user_id", "actor", "action", "entity_type", "entity_id", "changes"],
            select(
                v.user_id,
                v.actor,
                literal("dial_queue_lease"),
                literal("phone_number"),
                updated.c.id,
                changes,
            ),
        )
        .cte("audited")
    )


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
