"""A project's providers, geo and members. Scope first: a project outside the caller's reach (or
deleted) is 404 on every route here; only then is the role checked, so a manager learns nothing
about other projects. Managers link providers and geo to their own projects; only admins change
members. Each link change writes one audit row on the project."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from api import audit
from api.deps import ClientDep, ClientInfo, CurrentUser, SessionDep, UserDep
from api.errors import FieldError, conflict, not_found
from api.pagination import Page, PageDep, apply_ordering, paginate
from api.schemas.common import IdPath, Ordering
from api.schemas.geo import GeoOut
from api.schemas.links import (
    GeoLinkIn,
    LinkedGeo,
    LinkedProvider,
    MemberIn,
    MemberOut,
    ProviderLinkIn,
)
from api.schemas.providers import ProviderOut
from api.scope import get_project_or_404
from api.strict_query import StrictQuery
from models.tables import Geo, ProjectGeo, ProjectMember, ProjectProvider, Provider, User

router = APIRouter(
    prefix="/api/projects/{project_id}", tags=["project links"], dependencies=[StrictQuery]
)


def _record(
    session: Session,
    user: CurrentUser,
    client: ClientInfo,
    project_id: int,
    action: str,
    field: str,
    old: int | None,
    new: int | None,
) -> None:
    audit.record(
        session,
        action=action,
        user=user,
        entity_type="project",
        entity_id=project_id,
        changes={field: [old, new]},
        client=client,
    )


def _require_admin(user: CurrentUser) -> None:
    if not user.is_admin:
        raise HTTPException(status_code=403, detail="Only administrators may do this.")


def _insert_link(session: Session, table: Any, column: str, project_id: int, ref_id: int) -> Any:
    """Link a reference row to a project; its link time, or None if it was linked already."""
    return session.scalar(
        insert(table)
        .values(project_id=project_id, **{column: ref_id})
        .on_conflict_do_nothing(index_elements=["project_id", column])
        .returning(table.created_at)
    )


def _delete_link(session: Session, table: Any, column: str, project_id: int, ref_id: int) -> bool:
    gone = session.scalar(
        delete(table)
        .where(table.project_id == project_id, getattr(table, column) == ref_id)
        .returning(table.id)
    )
    return gone is not None


# --- providers -------------------------------------------------------------------------------

PROVIDER_ORDERING = {
    "id": Provider.id,
    "code": Provider.code,
    "name": Provider.name,
    "linked_at": ProjectProvider.created_at,
}


@router.get("/providers/", response_model=Page[LinkedProvider], summary="A project's providers")
def list_project_providers(
    project_id: IdPath,
    request: Request,
    session: SessionDep,
    user: UserDep,
    page: PageDep,
    ordering: Ordering = None,
) -> dict[str, Any]:
    project = get_project_or_404(session, user, project_id)
    stmt = (
        select(Provider, ProjectProvider.created_at.label("linked_at"))
        .join(ProjectProvider, ProjectProvider.provider_id == Provider.id)
        .where(ProjectProvider.project_id == project.id)
    )
    stmt = apply_ordering(stmt, ordering, PROVIDER_ORDERING, tiebreak=Provider.id)

    def serialize(row: Any) -> LinkedProvider:
        base = ProviderOut.model_validate(row.Provider).model_dump()
        return LinkedProvider(**base, linked_at=row.linked_at)

    return paginate(session, stmt, page, request, serialize, scalars=False)


@router.post(
    "/providers/", response_model=LinkedProvider, status_code=201, summary="Link a provider"
)
def link_provider(
    project_id: IdPath, body: ProviderLinkIn, session: SessionDep, user: UserDep, client: ClientDep
) -> LinkedProvider:
    project = get_project_or_404(session, user, project_id, for_update=True)
    provider = session.get(Provider, body.provider_id)
    if provider is None:
        raise FieldError("provider_id", f"Provider {body.provider_id} does not exist.")
    linked_at = _insert_link(session, ProjectProvider, "provider_id", project.id, provider.id)
    if linked_at is None:
        raise conflict(f"Provider {provider.id} is already linked to this project.")
    _record(session, user, client, project.id, "link_provider", "provider_id", None, provider.id)
    session.commit()
    return LinkedProvider(**ProviderOut.model_validate(provider).model_dump(), linked_at=linked_at)


@router.delete("/providers/{provider_id}/", status_code=204, summary="Unlink a provider")
def unlink_provider(
    project_id: IdPath, provider_id: IdPath, session: SessionDep, user: UserDep, client: ClientDep
) -> Response:
    project = get_project_or_404(session, user, project_id, for_update=True)
    if not _delete_link(session, ProjectProvider, "provider_id", project.id, provider_id):
        raise not_found("Provider is not linked to this project.")
    _record(session, user, client, project.id, "unlink_provider", "provider_id", provider_id, None)
    session.commit()
    return Response(status_code=204)


# --- geo -------------------------------------------------------------------------------------

GEO_ORDERING = {
    "id": Geo.id,
    "country_code": Geo.country_code,
    "region": Geo.region,
    "city": Geo.city,
    "linked_at": ProjectGeo.created_at,
}


@router.get("/geo/", response_model=Page[LinkedGeo], summary="A project's geo entries")
def list_project_geo(
    project_id: IdPath,
    request: Request,
    session: SessionDep,
    user: UserDep,
    page: PageDep,
    ordering: Ordering = None,
) -> dict[str, Any]:
    project = get_project_or_404(session, user, project_id)
    stmt = (
        select(Geo, ProjectGeo.created_at.label("linked_at"))
        .join(ProjectGeo, ProjectGeo.geo_id == Geo.id)
        .where(ProjectGeo.project_id == project.id)
    )
    stmt = apply_ordering(stmt, ordering, GEO_ORDERING, tiebreak=Geo.id)

    def serialize(row: Any) -> LinkedGeo:
        return LinkedGeo(**GeoOut.model_validate(row.Geo).model_dump(), linked_at=row.linked_at)

    return paginate(session, stmt, page, request, serialize, scalars=False)


@router.post("/geo/", response_model=LinkedGeo, status_code=201, summary="Link a geo entry")
def link_geo(
    project_id: IdPath, body: GeoLinkIn, session: SessionDep, user: UserDep, client: ClientDep
) -> LinkedGeo:
    project = get_project_or_404(session, user, project_id, for_update=True)
    geo = session.get(Geo, body.geo_id)
    if geo is None:
        raise FieldError("geo_id", f"Geo entry {body.geo_id} does not exist.")
    linked_at = _insert_link(session, ProjectGeo, "geo_id", project.id, geo.id)
    if linked_at is None:
        raise conflict(f"Geo entry {geo.id} is already linked to this project.")
    _record(session, user, client, project.id, "link_geo", "geo_id", None, geo.id)
    session.commit()
    return LinkedGeo(**GeoOut.model_validate(geo).model_dump(), linked_at=linked_at)


@router.delete("/geo/{geo_id}/", status_code=204, summary="Unlink a geo entry")
def unlink_geo(
    project_id: IdPath, geo_id: IdPath, session: SessionDep, user: UserDep, client: ClientDep
) -> Response:
    project = get_project_or_404(session, user, project_id, for_update=True)
    if not _delete_link(session, ProjectGeo, "geo_id", project.id, geo_id):
        raise not_found("Geo entry is not linked to this project.")
    _record(session, user, client, project.id, "unlink_geo", "geo_id", geo_id, None)
    session.commit()
    return Response(status_code=204)


# --- members ---------------------------------------------------------------------------------

MEMBER_ORDERING = {
    "user_id": User.id,
    "username": User.username,
    "added_at": ProjectMember.created_at,
}


def _member_out(user: User, added_at: Any) -> MemberOut:
    return MemberOut(
        user_id=user.id,
        username=user.username,
        email=user.email,
        role=user.role,  # type: ignore[arg-type]
        is_active=user.is_active,
        added_at=added_at,
    )


@router.get("/members/", response_model=Page[MemberOut], summary="A project's members")
def list_members(
    project_id: IdPath,
    request: Request,
    session: SessionDep,
    user: UserDep,
    page: PageDep,
    ordering: Ordering = None,
) -> dict[str, Any]:
    project = get_project_or_404(session, user, project_id)
    stmt = (
        select(User, ProjectMember.created_at.label("added_at"))
        .join(ProjectMember, ProjectMember.user_id == User.id)
        .where(ProjectMember.project_id == project.id)
    )
    stmt = apply_ordering(stmt, ordering, MEMBER_ORDERING, default=("username",), tiebreak=User.id)
    return paginate(
        session, stmt, page, request, lambda r: _member_out(r.User, r.added_at), scalars=False
    )


@router.post("/members/", response_model=MemberOut, status_code=201, summary="Add a member (admin)")
def add_member(
    project_id: IdPath, body: MemberIn, session: SessionDep, user: UserDep, client: ClientDep
) -> MemberOut:
    project = get_project_or_404(session, user, project_id, for_update=True)
    _require_admin(user)
    member = session.scalar(select(User).where(User.id == body.user_id, User.is_active.is_(True)))
    if member is None:
        raise FieldError("user_id", f"No active user with id {body.user_id}.")
    added_at = session.scalar(
        insert(ProjectMember)
        .values(project_id=project.id, user_id=member.id)
        .on_conflict_do_nothing(index_elements=["project_id", "user_id"])
        .returning(ProjectMember.created_at)
    )
    if added_at is None:
        raise conflict(f"User {member.id} is already a member of this project.")
    _record(session, user, client, project.id, "add_member", "user_id", None, member.id)
    session.commit()
    return _member_out(member, added_at)


@router.delete("/members/{user_id}/", status_code=204, summary="Remove a member (admin)")
def remove_member(
    project_id: IdPath, user_id: IdPath, session: SessionDep, user: UserDep, client: ClientDep
) -> Response:
    project = get_project_or_404(session, user, project_id, for_update=True)
    _require_admin(user)
    gone = session.scalar(
        delete(ProjectMember)
        .where(ProjectMember.project_id == project.id, ProjectMember.user_id == user_id)
        .returning(ProjectMember.user_id)
    )
    if gone is None:
        raise not_found("User is not a member of this project.")
    _record(session, user, client, project.id, "remove_member", "user_id", user_id, None)
    session.commit()
    return Response(status_code=204)
