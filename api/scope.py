"""RBAC in the query: which projects a user reaches. Admins reach every live project; managers
only those they are members of. Out-of-scope objects are simply not found (404), never 403."""

from __future__ import annotations

from sqlalchemy import ColumnElement, Select, select
from sqlalchemy.orm import Session

from api.deps import CurrentUser
from api.errors import not_found
from models.tables import Project, ProjectMember


def member_project_ids(user: CurrentUser) -> Select[tuple[int]]:
    return select(ProjectMember.project_id).where(ProjectMember.user_id == user.id)


def visible_project_ids(user: CurrentUser) -> Select[tuple[int]]:
    """Ids of the live projects the user may see, as a subquery for `IN (...)`."""
    stmt = select(Project.id).where(Project.is_deleted.is_(False))
    if not user.is_admin:
        stmt = stmt.where(Project.id.in_(member_project_ids(user)))
    return stmt


def project_filter(user: CurrentUser, column: ColumnElement[int]) -> ColumnElement[bool]:
    """`column IN (visible projects)` for any table with a project id column."""
    return column.in_(visible_project_ids(user))


def projects_in_scope(user: CurrentUser, *, deleted: bool = False) -> Select[tuple[Project]]:
    stmt = select(Project).where(Project.is_deleted.is_(deleted))
    if not user.is_admin:
        stmt = stmt.where(Project.id.in_(member_project_ids(user)))
    return stmt


def get_project_or_404(
    session: Session,
    user: CurrentUser,
    project_id: int,
    *,
    deleted: bool = False,
    for_update: bool = False,
) -> Project:
    stmt = projects_in_scope(user, deleted=deleted).where(Project.id == project_id)
    if for_update:
        stmt = stmt.with_for_update()
    project = session.scalar(stmt)
    if project is None:
        raise not_found("Project not found.")
    return project
