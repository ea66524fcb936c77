"""Providers (lead vendors): everyone signed in reads; only admins write. `code` is a unique slug
fixed at creation (SFTP folder names use it). A provider still linked to a project or
referenced by numbers is not deleted (409): set it inactive instead."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import exists, or_, select

from api import audit
from api.crud import apply_update, commit_and_refresh, insert_audited
from api.deps import AdminDep, ClientDep, SessionDep, UserDep
from api.errors import conflict, not_found
from api.pagination import Page, PageDep, apply_ordering, paginate
from api.schemas.common import IdPath, Ordering, Search, like_pattern
from api.schemas.providers import (
    ProviderCreate,
    ProviderOut,
    ProviderPatch,
    ProviderReplace,
    ProviderStatus,
)
from api.strict_query import StrictQuery
from models.tables import PhoneNumber, ProjectProvider, Provider

router = APIRouter(prefix="/api/providers", tags=["providers"], dependencies=[StrictQuery])

ORDERING = {
    "id": Provider.id,
    "code": Provider.code,
    "name": Provider.name,
    "type": Provider.type,
    "status": Provider.status,
    "created_at": Provider.created_at,
    "updated_at": Provider.updated_at,
}
AUDITED = ("code", "name", "type", "contact_info", "status")


def get_provider_or_404(
    session: SessionDep, provider_id: int, *, for_update: bool = False
) -> Provider:
    stmt = select(Provider).where(Provider.id == provider_id)
    if for_update:
        stmt = stmt.with_for_update()
    provider = session.scalar(stmt)
    if provider is None:
        raise not_found("Provider not found.")
    return provider


@router.get("/", response_model=Page[ProviderOut], summary="List providers")
def list_providers(
    request: Request,
    session: SessionDep,
    _: UserDep,
    page: PageDep,
    status: Annotated[ProviderStatus | None, Query()] = None,
    type: Annotated[str | None, Query(max_length=100, pattern=r"^[^\x00]*$")] = None,
    search: Search = None,
    ordering: Ordering = None,
) -> dict[str, Any]:
    stmt = select(Provider)
    if status is not None:
        stmt = stmt.where(Provider.status == status)
    if type is not None:
        stmt = stmt.where(Provider.type == type)
    if search:
        pattern = like_pattern(search)
        stmt = stmt.where(or_(Provider.name.ilike(pattern), Provider.code.ilike(pattern)))
    stmt = apply_ordering(stmt, ordering, ORDERING, tiebreak=Provider.id)
    return paginate(session, stmt, page, request, ProviderOut.model_validate)


@router.post("/", response_model=ProviderOut, status_code=201, summary="Create a provider")
def create_provider(
    body: ProviderCreate, session: SessionDep, admin: AdminDep, client: ClientDep
) -> Provider:
    provider = Provider(**body.model_dump())
    insert_audited(session, provider, AUDITED, user=admin, client=client, entity_type="provider")
    return commit_and_refresh(session, provider)


@router.get("/{provider_id}/", response_model=ProviderOut, summary="Read a provider")
def read_provider(provider_id: IdPath, session: SessionDep, _: UserDep) -> Provider:
    return get_provider_or_404(session, provider_id)


def _update(
    session: SessionDep, admin: AdminDep, client: ClientDep, provider_id: int, data: dict[str, Any]
) -> Provider:
    provider = get_provider_or_404(session, provider_id, for_update=True)
    apply_update(session, provider, data, user=admin, client=client, entity_type="provider")
    return commit_and_refresh(session, provider)


@router.put("/{provider_id}/", response_model=ProviderOut, summary="Replace a provider's fields")
def replace_provider(
    provider_id: IdPath,
    body: ProviderReplace,
    session: SessionDep,
    admin: AdminDep,
    client: ClientDep,
) -> Provider:
    return _update(session, admin, client, provider_id, body.model_dump())


@router.patch("/{provider_id}/", response_model=ProviderOut, summary="Update provider fields")
def patch_provider(
    provider_id: IdPath,
    body: ProviderPatch,
    session: SessionDep,
    admin: AdminDep,
    client: ClientDep,
) -> Provider:
    return _update(session, admin, client, provider_id, body.model_dump(exclude_unset=True))


@router.delete("/{provider_id}/", status_code=204, summary="Delete an unused provider")
def delete_provider(
    provider_id: IdPath, session: SessionDep, admin: AdminDep, client: ClientDep
) -> Response:
    provider = get_provider_or_404(session, provider_id, for_update=True)
    in_use = session.scalar(
        select(
            exists().where(ProjectProvider.provider_id == provider.id)
            | exists().where(PhoneNumber.provider_id == provider.id)
        )
    )
    if in_use:
        raise conflict(
            "Provider is linked to projects or numbers; unlink it or set status 'inactive'."
        )
    before = audit.snapshot(provider, AUDITED)
    session.delete(provider)
    audit.record(
        session,
        action="delete",
        user=admin,
        entity_type="provider",
        entity_id=provider_id,
        changes=audit.diff(before, dict.fromkeys(AUDITED)),
        client=client,
    )
    session.commit()
    return Response(status_code=204)
