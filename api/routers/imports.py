"""/api/imports/: the recorded loads (SFTP file imports and API bulk requests) with their counts,
one load's lead quality from the dbt mart, and its lead cost (PATCH, audited).

Scope is part of every query: a load of a project outside the caller's scope (or deleted) is
not found (404). The mart is read only when it exists (the first dbt run creates it)."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from api.crud import apply_update, commit_and_refresh
from api.deps import ClientDep, CurrentUser, SessionDep, UserDep
from api.errors import FieldError, not_found
from api.pagination import Page, PageDep, apply_ordering, paginate
from api.schemas.common import CreatedAfter, CreatedBefore, IdPath, IdQuery, Ordering
from api.schemas.imports import ImportDetail, ImportOut, ImportPatch, NumberFigures
from api.scope import get_project_or_404, project_filter
from api.strict_query import StrictQuery
from models.tables import NumberLoad

router = APIRouter(prefix="/api/imports", tags=["imports"], dependencies=[StrictQuery])

ANALYTICS = "analytics"
LOAD_MART = f"{ANALYTICS}.fct_lead_quality_load"
ORDERING = {
    name: getattr(NumberLoad, name)
    for name in ("id", "created_at", "rows_read", "inserted", "invalid", "duplicate_elsewhere")
}


def mart_exists(session: Session, name: str) -> bool:
    return session.scalar(select(func.to_regclass(name))) is not None


def _load_or_404(
    session: Session, user: CurrentUser, load_id: int, *, for_update: bool = False
) -> NumberLoad:
    stmt = select(NumberLoad).where(
        NumberLoad.id == load_id, project_filter(user, NumberLoad.project_id)
    )
    load = session.scalar(stmt.with_for_update() if for_update else stmt)
    if load is None:
        raise not_found("Import not found.")
    return load


@router.get("/", response_model=Page[ImportOut], summary="List recorded loads in scope")
def list_imports(
    request: Request,
    session: SessionDep,
    user: UserDep,
    page: PageDep,
    project_id: IdQuery = None,
    provider_id: IdQuery = None,
    kind: Annotated[Literal["sftp", "api"] | None, Query()] = None,
    created_after: CreatedAfter = None,
    created_before: CreatedBefore = None,
    ordering: Ordering = None,
) -> dict[str, Any]:
    if created_after and created_before and created_after >= created_before:
        raise FieldError("created_after", "created_after must be earlier than created_before.")
    if project_id is not None:
        get_project_or_404(session, user, project_id)
    stmt = select(NumberLoad).where(project_filter(user, NumberLoad.project_id))
    if project_id is not None:
        stmt = stmt.where(NumberLoad.project_id == project_id)
    if provider_id is not None:
        stmt = stmt.where(NumberLoad.provider_id == provider_id)
    if kind is not None:
        stmt = stmt.where(NumberLoad.kind == kind)
    if created_after is not None:
        stmt = stmt.where(NumberLoad.created_at >= created_after)
    if created_before is not None:
        stmt = stmt.where(NumberLoad.created_at < created_before)
    stmt = apply_ordering(stmt, ordering, ORDERING, default=("-id",), tiebreak=NumberLoad.id)
    return paginate(session, stmt, page, request, ImportOut.model_validate)


@router.get("/{load_id}/", response_model=ImportDetail, summary="A load and its lead quality")
def read_import(load_id: IdPath, session: SessionDep, user: UserDep) -> dict[str, Any]:
    load = _load_or_404(session, user, load_id)
    return _detail(session, load)


def _detail(session: Session, load: NumberLoad) -> dict[str, Any]:
    quality = None
    if mart_exists(session, LOAD_MART):
        row = session.execute(
            text(f"SELECT * FROM {LOAD_MART} WHERE load_id = :id"), {"id": load.id}
        ).mappings().first()  # fmt: skip
        if row is not None:
            quality = NumberFigures.model_validate(dict(row))
    return {**ImportOut.model_validate(load).model_dump(), "quality": quality}


@router.patch("/{load_id}/", response_model=ImportDetail, summary="Set a load's lead cost")
def patch_import(
    load_id: IdPath, body: ImportPatch, session: SessionDep, user: UserDep, client: ClientDep
) -> dict[str, Any]:
    load = _load_or_404(session, user, load_id, for_update=True)
    data = body.model_dump(exclude_unset=True)
    if data.get("lead_cost") is not None:  # cents, as stored: an unchanged cost audits nothing
        data["lead_cost"] = Decimal(str(data["lead_cost"])).quantize(
            Decimal("0.01"), rounding=ROUND_HALF_UP
        )
    apply_update(
        session,
        load,
        data,
        user=user,
        client=client,
        entity_type="number_load",
    )
    return _detail(session, commit_and_refresh(session, load))
