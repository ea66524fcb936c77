"""Projects: admins create; members (managers) and admins read, edit, soft-delete and restore.

Soft delete sets is_deleted, deleted_at and status 'deleted' together (the ck_projects_soft_delete
CHECK refuses anything half-applied); restore brings the project back as 'active'. Deleted
projects vanish from every normal list and lookup, nested routes included."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import Select, func, or_, select

from api.crud import apply_update, commit_and_refresh, insert_audited
from api.deps import AdminDep, ClientDep, SessionDep, UserDep
from api.pagination import Page, PageDep, apply_ordering, paginate
from api.schemas.common import CreatedAfter, CreatedBefore, IdPath, Ordering, Search, like_pattern
from api.schemas.projects import LiveStatus, ProjectCreate, ProjectOut, ProjectPatch, ProjectReplace
from api.scope import get_project_or_404, projects_in_scope
from api.strict_query import StrictQuery
from models.tables import Project

router = APIRouter(prefix="/api/projects", tags=["projects"], dependencies=[StrictQuery])

ORDERING = {
    "id": Project.id,
    "code": Project.code,
    "name": Project.name,
    "status": Project.status,
    "created_at": Project.created_at,
    "updated_at": Project.updated_at,
    "deleted_at": Project.deleted_at,
}
AUDITED = (
    "code", "name", "description", "status", "created_by", "dedupe_scope", "dedupe_window_days",
)  # fmt: skip


def _filtered(
    stmt: Select[Any],
    search: str | None,
    created_after: Any,
    created_before: Any,
) -> Select[Any]:
    if search:
        pattern = like_pattern(search)
        stmt = stmt.where(or_(Project.name.ilike(pattern), Project.code.ilike(pattern)))
    if created_after is not None:
        stmt = stmt.where(Project.created_at >= created_after)
    if created_before is not None:
        stmt = stmt.where(Project.created_at < created_before)
    return stmt


@router.get("/", response_model=Page[ProjectOut], summary="List live projects in scope")
def list_projects(
    request: Request,
    session: SessionDep,
    user: UserDep,
    page: PageDep,
    status: Annotated[LiveStatus | None, Query()] = None,
    search: Search = None,
    created_after: CreatedAfter = None,
    created_before: CreatedBefore = None,
    ordering: Ordering = None,
) -> dict[str, Any]:
    stmt = _filtered(projects_in_scope(user), search, created_after, created_before)
    if status is not None:
        stmt = stmt.where(Project.status == status)
    stmt = apply_ordering(stmt, ordering, ORDERING, tiebreak=Project.id)
    return paginate(session, stmt, page, request, ProjectOut.model_validate)


# Declared before /{project_id}/ so "deleted" is never parsed as an id.
@router.get("/deleted/", response_model=Page[ProjectOut], summary="List soft-deleted projects")
def list_deleted_projects(
    request: Request,
    session: SessionDep,
    user: UserDep,
    page: PageDep,
    search: Search = None,
    created_after: CreatedAfter = None,
    created_before: CreatedBefore = None,
    ordering: Ordering = None,
) -> dict[str, Any]:
    stmt = _filtered(projects_in_scope(user, deleted=True), search, created_after, created_before)
    stmt = apply_ordering(stmt, ordering, ORDERING, default=("-deleted_at",), tiebreak=Project.id)
    return paginate(session, stmt, page, request, ProjectOut.model_validate)


@router.post("/", response_model=ProjectOut, status_code=201, summary="Create a project (admin)")
def create_project(
    body: ProjectCreate, session: SessionDep, admin: AdminDep, client: ClientDep
) -> Project:
    project = Project(**body.model_dump(), created_by=admin.id)
    insert_audited(session, project, AUDITED, user=admin, client=client, entity_type="project")
    return commit_and_refresh(session, project)


@router.get("/{project_id}/", response_model=ProjectOut, summary="Read a project")
def read_project(project_id: IdPath, session: SessionDep, user: UserDep) -> Project:
    return get_project_or_404(session, user, project_id)


def _update(
    session: SessionDep, user: UserDep, client: ClientDep, project_id: int, data: dict[str, Any]
) -> Project:
    project = get_project_or_404(session, user, project_id, for_update=True)
    apply_update(session, project, data, user=user, client=client, entity_type="project")
    return commit_and_refresh(session, project)


@router.put("/{project_id}/", response_model=ProjectOut, summary="Replace a project's fields")
def replace_project(
    project_id: IdPath, body: ProjectReplace, session: SessionDep, user: UserDep, client: ClientDep
) -> Project:
    return _update(session, user, client, project_id, body.model_dump())


@router.patch("/{project_id}/", response_model=ProjectOut, summary="Update some project fields")
def patch_project(
    project_id: IdPath, body: ProjectPatch, session: SessionDep, user: UserDep, client: ClientDep
) -> Project:
    return _update(session, user, client, project_id, body.model_dump(exclude_unset=True))


@router.delete("/{project_id}/", status_code=204, summary="Soft-delete a project")
def delete_project(
    project_id: IdPath, session: SessionDep, user: UserDep, client: ClientDep
) -> Response:
    project = get_project_or_404(session, user, project_id, for_update=True)
    data = {
        "is_deleted": True,
        "deleted_at": session.scalar(select(func.now())),
        "status": "deleted",
    }
    apply_update(
        session,
        project,
        data,
        user=user,
        client=client,
        entity_type="project",
        action="soft_delete",
    )
    session.commit()
    return Response(status_code=204)


@router.post(
    "/{project_id}/restore/", response_model=ProjectOut, summary="Restore a deleted project"
)
def restore_project(
    project_id: IdPath, session: SessionDep, user: UserDep, client: ClientDep
) -> Project:
    project = get_project_or_404(session, user, project_id, deleted=True, for_update=True)
    data = {"is_deleted": False, "deleted_at": None, "status": "active"}
    apply_update(
        session, project, data, user=user, client=client, entity_type="project", action="restore"
    )
    return commit_and_refresh(session, project)
