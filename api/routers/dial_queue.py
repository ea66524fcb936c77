"""The dial queue under a project (models/dialing/queue.py, docs/dial-queue.md; its rules:
api/routers/dialing_rules.py):

* `/api/projects/{id}/dial-queue/` GET: queue state; `lease/`, `release/`: hand numbers out and
  take them back; `reset/` (admins): make exhausted numbers eligible again, with a dry run.

Lease, release and state take a user token (managers: their projects; others are 404) or the
SoftPhone service key (`X-API-Key`: any live project). A lease is one short transaction.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials
from sqlalchemy import Connection, insert, select
from sqlalchemy.orm import Session

from api import audit
from api.deps import (
    AdminDep,
    ClientDep,
    CurrentUser,
    SessionDep,
    SettingsDep,
    bearer,
    token_claims,
    user_of,
)
from api.errors import not_found
from api.queue_plans import plan_cache
from api.routers.softphone import is_service_key
from api.schemas.common import IdPath
from api.schemas.dial_queue import (
    LeasedNumber,
    LeaseIn,
    LeaseOut,
    QueueCounts,
    QueueStateOut,
    ReleasedNumber,
    ReleaseIn,
    ReleaseOut,
    ResetIn,
    ResetOut,
)
from api.scope import get_project_or_404, project_filter
from api.strict_query import StrictQuery
from models.dialing import queue, queue_rules, queue_state
from models.dialing.policy import PolicyConfig
from models.settings import Settings
from models.tables import AuditLog, Project

router = APIRouter(prefix="/api/projects", tags=["dial queue"], dependencies=[StrictQuery])
SERVICE_ACTOR = "service:softphone"


@dataclass(frozen=True)
class QueueActor:
    user: CurrentUser | None  # None: the SoftPhone service key

    @property
    def audit_fields(self) -> dict[str, Any]:
        return {"user_id": self.user.id} if self.user else {"actor": SERVICE_ACTOR}


def queue_actor(
    session: SessionDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    x_api_key: Annotated[str | None, Header(description="the softphone service key")] = None,
) -> QueueActor:
    if is_service_key(settings, x_api_key):
        return QueueActor(None)
    return QueueActor(user_of(session, token_claims(settings, credentials)))


QueueActorDep = Annotated[QueueActor, Depends(queue_actor)]


def _project(session: Session, actor: QueueActor, project_id: int, **kw: Any) -> Project:
    if actor.user is not None:
        return get_project_or_404(session, actor.user, project_id, **kw)
    stmt = select(Project).where(Project.id == project_id, Project.is_deleted.is_(False))
    project = session.scalar(stmt)
    if project is None:
        raise not_found("Project not found.")
    return project


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def lease_actor(
    request: Request,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    x_api_key: Annotated[str | None, Header(description="the softphone service key")] = None,
) -> QueueActor:
    """Who leases, checked before the body (401 before 400): the SoftPhone service key without
    a database read or a threadpool hop (the dialers' hot path); a user token's user (active,
    current epoch, not revoked) in one hop."""
    if is_service_key(settings, x_api_key):
        return QueueActor(None)
    claims = token_claims(settings, credentials)

    def check() -> CurrentUser:
        with request.app.state.engine.connect() as conn:
            return user_of(conn, claims)

    return QueueActor(await run_in_threadpool(check))


@router.post(
    "/{project_id}/dial-queue/lease/",
    response_model=LeaseOut,
    summary="Lease up to `count` eligible numbers to one holder, in the project's order",
)
async def lease(
    project_id: IdPath,
    body: LeaseIn,
    request: Request,
    settings: SettingsDep,
    actor: Annotated[QueueActor, Depends(lease_actor)],
) -> Response:
    """The hottest dial-queue path (agents and dialers poll it): one thread hop, a bare
    autocommit connection, and for the service key ONE statement per lease (lease and audit
    rows together, models/dialing/queue.py); the project's rules and time inputs come from
    the per-process plan cache (models/dialing/queue_plan.py)."""
    state = request.app.state
    now = _now()
    config = PolicyConfig.from_settings(settings)
    plans = plan_cache(state)

    def run() -> list[queue.Leased]:
        with state.engine.connect() as conn:
            # Autocommit: the lease is one atomic statement; no BEGIN / COMMIT round trips.
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            if actor.user is not None:
                _visible_or_404(conn, actor.user, project_id)
            leased = plans.get(conn, project_id, now).lease(
                conn,
                holder=body.holder,
                count=body.count,
                lease_seconds=body.lease_seconds,
                now=now,
                config=config,
                audit=actor.audit_fields,
            )
            if not leased and actor.user is None:  # nothing handed out: 404 if it is why
                _visible_or_404(conn, None, project_id)
            return leased

    leased = await run_in_threadpool(run)
    out = LeaseOut(
        holder=body.holder,
        leased_until=now + dt.timedelta(seconds=body.lease_seconds),
        numbers=[
            LeasedNumber(
                id=n.id,
                phone_number=n.phone_number,
                status_before=n.status_before,
                call_attempts=n.call_attempts,
                priority=n.priority,
            )
            for n in leased
        ],
    )
    return Response(out.model_dump_json(), media_type="application/json")


def _visible_or_404(conn: Connection, user: CurrentUser | None, project_id: int) -> None:
    """The project exists, is not deleted and (for a user) is in the user's scope."""
    stmt = (
        select(Project.id).where(Project.id == project_id, Project.is_deleted.is_(False))
        if user is None
        else select(Project.id).where(Project.id == project_id, project_filter(user, Project.id))
    )
    if conn.scalar(stmt) is None:
        raise not_found("Project not found.")


@router.post(
    "/{project_id}/dial-queue/release/",
    response_model=ReleaseOut,
    summary="Give leased numbers back, with or without the call's outcome",
)
def release(
    project_id: IdPath, body: ReleaseIn, session: SessionDep, actor: QueueActorDep
) -> ReleaseOut:
    _project(session, actor, project_id)
    rows = queue.release(
        session,
        project_id,
        holder=body.holder,
        ids=body.ids,
        outcome=body.outcome,
        now=_now(),
    )
    if rows:
        session.execute(
            insert(AuditLog),
            [
                {
                    **actor.audit_fields,
                    "action": "dial_queue_release",
                    "entity_type": "phone_number",
                    "entity_id": number_id,
                    "changes": {
                        "status": [old, new],
                        "leased_by": [body.holder, None],
                        "outcome": body.outcome,
                        "project_id": project_id,
                    },
                }
                for number_id, old, new in rows
            ],
        )
    session.commit()
    released = {r[0] for r in rows}
    return ReleaseOut(
        released=[ReleasedNumber(id=r[0], status=r[2]) for r in rows],
        not_held=sorted(set(body.ids) - released),
    )


@router.get(
    "/{project_id}/dial-queue/",
    response_model=QueueStateOut,
    summary="Queue state: eligible now, waiting for a retry, outside hours, exhausted, ...",
    description="Counts of the whole project, at most `NUMBASE_DIAL_QUEUE_STATE_CACHE_SECONDS` "
    "old plus the time one count takes (`at` is when they were counted).",
)
def get_state(
    project_id: IdPath,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    actor: QueueActorDep,
) -> QueueStateOut:
    project = _project(session, actor, project_id)  # scope first: the cache is per project
    ttl = settings.dial_queue_state_cache_seconds
    if not ttl:
        return _count_state(session, project, settings)
    cache: dict[int, tuple[float, QueueStateOut]] = request.app.state.__dict__.setdefault(
        "dial_queue_state_cache", {}
    )
    counting: set[int] = request.app.state.__dict__.setdefault("dial_queue_state_counting", set())
    hit = cache.get(project_id)
    if hit and (hit[0] > time.monotonic() or project_id in counting):
        # Fresh, or stale while another request of this worker recounts: the old counts
        # (a 2M-number project takes ~1-2 s to count; one caller per expiry pays it, not all).
        return hit[1]
    counting.add(project_id)
    try:
        out = _count_state(session, project, settings)
    finally:
        counting.discard(project_id)
    cache[project_id] = (time.monotonic() + ttl, out)
    return out


def _count_state(session: Session, project: Project, settings: Settings) -> QueueStateOut:
    project_id = project.id
    s = queue_state.state(
        session,
        project,
        queue_rules.load(session, project_id),
        _now(),
        PolicyConfig.from_settings(settings),
    )
    return QueueStateOut(
        project_id=s.project_id,
        at=s.at,
        project_active=s.project_active,
        total=s.total,
        counts=QueueCounts(**s.counts),
        next_retry_at=s.next_retry_at,
        retries_opening_next_hour=s.retries_opening_next_hour,
    )


@router.post(
    "/{project_id}/dial-queue/reset/",
    response_model=ResetOut,
    summary="Admins: make exhausted numbers eligible again (dry run by default)",
)
def reset(
    project_id: IdPath,
    body: ResetIn,
    session: SessionDep,
    settings: SettingsDep,
    admin: AdminDep,
    client: ClientDep,
) -> ResetOut:
    project = get_project_or_404(session, admin, project_id)
    flt = body.filter
    matched = queue_state.reset_exhausted(
        session,
        project,
        queue_rules.load(session, project_id),
        _now(),
        PolicyConfig.from_settings(settings),
        queue_state.ResetFilter(
            statuses=flt.status if flt else None, phone_prefix=flt.phone_prefix if flt else None
        ),
        dry_run=body.dry_run,
        user_id=admin.id,
    )
    if not body.dry_run:
        audit.record(
            session,
            action="dial_queue_reset",
            user=admin,
            entity_type="project",
            entity_id=project_id,
            changes={
                "reset": matched,
                "filter": flt.model_dump(exclude_none=True) if flt else None,
            },
            client=client,
        )
    session.commit()
    return ResetOut(project_id=project_id, dry_run=body.dry_run, matched=matched)
