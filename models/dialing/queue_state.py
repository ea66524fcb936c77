"""How a project's base is being worked: queue-state counts, and the reset of exhausted numbers.

Every number falls in exactly one category, the first of these that applies (so they add up to
the total): final, dnc, exhausted, leased, waiting_retry, outside_hours, eligible (`paused`
instead of eligible when the project is not active). The categories are the parts of the one
eligibility predicate (models/dialing/queue.py), negated in that order.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import (
    ColumnElement,
    and_,
    case,
    func,
    insert,
    literal,
    literal_column,
    not_,
    select,
    update,
)
from sqlalchemy.orm import Session

from models.dialing import policy
from models.dialing.eligibility import dnc_listed_scan
from models.dialing.queue import P, T, conditions
from models.dialing.queue_rules import Rules
from models.tables import AuditLog, Project

CATEGORIES = (
    "final",
    "dnc",
    "exhausted",
    "leased",
    "waiting_retry",
    "outside_hours",
    "eligible",
    "paused",
)


@dataclass
class QueueState:
    project_id: int
    at: dt.datetime
    project_active: bool
    total: int
    counts: dict[str, int] = field(default_factory=dict)
    next_retry_at: dt.datetime | None = None
    retries_opening_next_hour: int = 0


def state(
    session: Session, project: Project, rules: Rules, now: dt.datetime, config: policy.PolicyConfig
) -> QueueState:
    c = conditions(session, project, rules, now, config)
    category = case(
        (not_(c.not_final), "final"),
        (dnc_listed_scan(project.id, now), "dnc"),  # = not not_dnc, hashed for a full scan
        (not_(c.below_max), "exhausted"),
        (not_(c.not_leased), "leased"),
        (not_(and_(c.retry_reached, c.gap_ok)), "waiting_retry"),
        (not_(c.callable), "outside_hours"),
        else_="eligible" if c.project_active else "paused",
    ).label("category")
    # GREATEST ignores NULLs: when the first waiting number opens (NULL: nothing pending).
    gap = func.make_interval(0, 0, 0, 0, 0, 0, rules.min_gap_seconds)
    opens = func.greatest(P.next_attempt_at, P.last_call_at + gap)
    hour = now + dt.timedelta(hours=1)
    # One pass, the category computed once per row (it is the grouping key); `opens` is read
    # only for the waiting group (for the others it is some past moment, or NULL).
    rows = session.execute(
        select(category, func.count(), func.min(opens), func.count().filter(opens <= hour))
        .where(P.project_id == project.id)
        .group_by(literal_column("1"))
    ).all()
    out = QueueState(project.id, now, c.project_active, 0, {k: 0 for k in CATEGORIES})
    for cat, n, first_open, within_hour in rows:
        out.counts[cat] = int(n)
        out.total += int(n)
        if cat == "waiting_retry":
            out.next_retry_at = first_open
            out.retries_opening_next_hour = int(within_hour)
    return out


@dataclass(frozen=True)
class ResetFilter:
    statuses: Sequence[str] | None = None
    phone_prefix: str | None = None  # E.164 prefix, e.g. "+7916"


def exhausted_condition(
    session: Session,
    project: Project,
    rules: Rules,
    now: dt.datetime,
    config: policy.PolicyConfig,
    flt: ResetFilter,
) -> ColumnElement[bool]:
    c = conditions(session, project, rules, now, config)
    parts: list[ColumnElement[bool]] = [P.project_id == project.id, c.not_final, not_(c.below_max)]
    if flt.statuses:
        parts.append(P.status.in_(list(flt.statuses)))
    if flt.phone_prefix:
        parts.append(P.phone_number.startswith(flt.phone_prefix, autoescape=True))
    return and_(*parts)


def reset_exhausted(
    session: Session,
    project: Project,
    rules: Rules,
    now: dt.datetime,
    config: policy.PolicyConfig,
    flt: ResetFilter,
    *,
    dry_run: bool,
    user_id: int | None,
) -> int:
    """Exhausted numbers (not final, attempts at the limit) get attempts 0 and no pending retry,
    so they are eligible again. Each number's old attempt count goes into its audit row (the call
    events stay too). Returns how many numbers match (dry run) or were reset."""
    where = exhausted_condition(session, project, rules, now, config, flt)
    if dry_run:
        return int(session.scalar(select(func.count()).where(where)) or 0)
    old = select(P.id, P.call_attempts).where(where).with_for_update().cte("old")
    updated = (
        update(T)
        .where(T.c.id == old.c.id)
        .values(call_attempts=0, next_attempt_at=None)
        .returning(T.c.id, old.c.call_attempts)
        .cte("updated")
    )
    A = AuditLog.__table__
    stmt = (
        insert(A)
        .from_select(
            ["user_id", "action", "entity_type", "entity_id", "changes"],
            select(
                literal(user_id, A.c.user_id.type),
                literal("dial_queue_reset"),
                literal("phone_number"),
                updated.c.id,
                func.jsonb_build_object(
                    "call_attempts",
                    func.jsonb_build_array(updated.c.call_attempts, 0),
                    "project_id",
                    project.id,
                ),
            ),
        )
        .add_cte(old)
        .add_cte(updated)
        .returning(A.c.id)
    )
    return len(session.execute(stmt).all())
