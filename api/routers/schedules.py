"""A project's calling windows. One weekday may hold several active windows, but they may not
overlap (touching, 09:00-12:00 then 12:00-18:00, is fine). The check runs after the project row
is locked, so two concurrent requests cannot both slip an overlapping window in."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from api import audit
from api.crud import apply_update, commit_and_refresh, insert_audited
from api.deps import ClientDep, SessionDep, UserDep
from api.errors import FieldError, not_found
from api.pagination import Page, PageDep, apply_ordering, paginate
from api.queue_plans import DropPlansAfterWrite
from api.schemas.common import IdPath, Ordering
from api.schemas.schedules import (
    ScheduleCreate,
    ScheduleOut,
    SchedulePatch,
    ScheduleReplace,
)
from api.scope import get_project_or_404
from api.strict_query import StrictQuery
from models.tables import ProjectSchedule

router = APIRouter(
    prefix="/api/projects/{project_id}/schedules",
    tags=["schedules"],
    dependencies=[StrictQuery, DropPlansAfterWrite],
)

ORDERING = {
    "id": ProjectSchedule.id,
    "weekday": ProjectSchedule.weekday,
    "start_time": ProjectSchedule.start_time,
    "end_time": ProjectSchedule.end_time,
    "created_at": ProjectSchedule.created_at,
}
AUDITED = ("project_id", "weekday", "start_time", "end_time", "is_active")


def _check_window(
    session: Session,
    project_id: int,
    weekday: int,
    start: dt.time,
    end: dt.time,
    is_active: bool,
    exclude_id: int | None = None,
) -> None:
    if start >= end:
        raise FieldError("end_time", "end_time must be after start_time.")
    if not is_active:
        return
    stmt = select(ProjectSchedule).where(
        ProjectSchedule.project_id == project_id,
        ProjectSchedule.weekday == weekday,
        ProjectSchedule.is_active.is_(True),
        ProjectSchedule.start_time < end,
        ProjectSchedule.end_time > start,
    )
    if exclude_id is not None:
        stmt = stmt.where(ProjectSchedule.id != exclude_id)
    clash = session.scalars(stmt.order_by(ProjectSchedule.start_time).limit(1)).first()
    if clash is not None:
        raise FieldError(
            "start_time",
            f"Overlaps the active window {clash.start_time:%H:%M}-{clash.end_time:%H:%M} "
            f"(id {clash.id}) on weekday {weekday}.",
        )


def _get(session: Session, project_id: int, schedule_id: int) -> ProjectSchedule:
    schedule = session.scalar(
        select(ProjectSchedule).where(
            ProjectSchedule.id == schedule_id, ProjectSchedule.project_id == project_id
        )
    )
    if schedule is None:
        raise not_found("Schedule not found.")
    return schedule


@router.get("/", response_model=Page[ScheduleOut], summary="A project's schedules")
def list_schedules(
    project_id: IdPath,
    request: Request,
    session: SessionDep,
    user: UserDep,
    page: PageDep,
    weekday: Annotated[int | None, Query(ge=0, le=6)] = None,
    is_active: Annotated[bool | None, Query()] = None,
    ordering: Ordering = None,
) -> dict[str, Any]:
    project = get_project_or_404(session, user, project_id)
    stmt = select(ProjectSchedule).where(ProjectSchedule.project_id == project.id)
    if weekday is not None:
        stmt = stmt.where(ProjectSchedule.weekday == weekday)
    if is_active is not None:
        stmt = stmt.where(ProjectSchedule.is_active.is_(is_active))
    stmt = apply_ordering(
        stmt, ordering, ORDERING, default=("weekday", "start_time"), tiebreak=ProjectSchedule.id
    )
    return paginate(session, stmt, page, request, ScheduleOut.model_validate)


@router.post("/", response_model=ScheduleOut, status_code=201, summary="Add a calling window")
def create_schedule(
    project_id: IdPath, body: ScheduleCreate, session: SessionDep, user: UserDep, client: ClientDep
) -> ProjectSchedule:
    project = get_project_or_404(session, user, project_id, for_update=True)
    _check_window(session, project.id, body.weekday, body.start_time, body.end_time, body.is_active)
    schedule = ProjectSchedule(project_id=project.id, **body.model_dump())
    insert_audited(
        session, schedule, AUDITED, user=user, client=client, entity_type="project_schedule"
    )
    return commit_and_refresh(session, schedule)


@router.get("/{schedule_id}/", response_model=ScheduleOut, summary="Read a calling window")
def read_schedule(
    project_id: IdPath, schedule_id: IdPath, session: SessionDep, user: UserDep
) -> ProjectSchedule:
    project = get_project_or_404(session, user, project_id)
    return _get(session, project.id, schedule_id)


def _update(
    session: SessionDep,
    user: UserDep,
    client: ClientDep,
    project_id: int,
    schedule_id: int,
    data: dict[str, Any],
) -> ProjectSchedule:
    project = get_project_or_404(session, user, project_id, for_update=True)
    schedule = _get(session, project.id, schedule_id)
    merged = {f: data.get(f, getattr(schedule, f)) for f in AUDITED[1:]}
    _check_window(session, project.id, exclude_id=schedule.id, **_window_args(merged))
    apply_update(session, schedule, data, user=user, client=client, entity_type="project_schedule")
    return commit_and_refresh(session, schedule)


def _window_args(merged: dict[str, Any]) -> dict[str, Any]:
    return {
        "weekday": merged["weekday"],
        "start": merged["start_time"],
        "end": merged["end_time"],
        "is_active": merged["is_active"],
    }


@router.put("/{schedule_id}/", response_model=ScheduleOut, summary="Replace a calling window")
def replace_schedule(
    project_id: IdPath,
    schedule_id: IdPath,
    body: ScheduleReplace,
    session: SessionDep,
    user: UserDep,
    client: ClientDep,
) -> ProjectSchedule:
    return _update(session, user, client, project_id, schedule_id, body.model_dump())


@router.patch("/{schedule_id}/", response_model=ScheduleOut, summary="Update a calling window")
def patch_schedule(
    project_id: IdPath,
    schedule_id: IdPath,
    body: SchedulePatch,
    session: SessionDep,
    user: UserDep,
    client: ClientDep,
) -> ProjectSchedule:
    data = body.model_dump(exclude_unset=True)
    return _update(session, user, client, project_id, schedule_id, data)


@router.delete("/{schedule_id}/", status_code=204, summary="Delete a calling window")
def delete_schedule(
    project_id: IdPath, schedule_id: IdPath, session: SessionDep, user: UserDep, client: ClientDep
) -> Response:
    project = get_project_or_404(session, user, project_id, for_update=True)
    schedule = _get(session, project.id, schedule_id)
    before = audit.snapshot(schedule, AUDITED)
    session.delete(schedule)
    audit.record(
        session,
        action="delete",
        user=user,
        entity_type="project_schedule",
        entity_id=schedule_id,
        changes=audit.diff(before, dict.fromkeys(AUDITED)),
        client=client,
    )
    session.commit()
    return Response(status_code=204)
