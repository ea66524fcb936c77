"""Geo (country / region / city / IANA time zone): everyone signed in reads; only admins write.
A geo row still linked to a project or referenced by numbers is not deleted (409)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import exists, func, or_, select

from api import audit
from api.crud import apply_update, commit_and_refresh, insert_audited
from api.deps import AdminDep, ClientDep, SessionDep, UserDep
from api.errors import conflict, not_found
from api.pagination import Page, PageDep, apply_ordering, paginate
from api.schemas.common import IdPath, Ordering, Search, like_pattern
from api.schemas.geo import GeoCreate, GeoOut, GeoPatch, GeoReplace
from api.strict_query import StrictQuery
from models.tables import Geo, PhoneNumber, ProjectGeo

router = APIRouter(prefix="/api/geo", tags=["geo"], dependencies=[StrictQuery])

ORDERING = {
    "id": Geo.id,
    "country_code": Geo.country_code,
    "region": Geo.region,
    "city": Geo.city,
    "timezone": Geo.timezone,
    "created_at": Geo.created_at,
    "updated_at": Geo.updated_at,
}
AUDITED = ("country_code", "region", "city", "timezone")
_TEXT = Query(max_length=255, pattern=r"^[^\x00]*$")


def get_geo_or_404(session: SessionDep, geo_id: int, *, for_update: bool = False) -> Geo:
    stmt = select(Geo).where(Geo.id == geo_id)
    if for_update:
        stmt = stmt.with_for_update()
    geo = session.scalar(stmt)
    if geo is None:
        raise not_found("Geo not found.")
    return geo


@router.get("/", response_model=Page[GeoOut], summary="List geo entries")
def list_geo(
    request: Request,
    session: SessionDep,
    _: UserDep,
    page: PageDep,
    country_code: Annotated[str | None, Query(max_length=10, pattern=r"^[A-Za-z]{2}$")] = None,
    region: Annotated[str | None, _TEXT] = None,
    city: Annotated[str | None, _TEXT] = None,
    timezone: Annotated[str | None, Query(max_length=50, pattern=r"^[^\x00]*$")] = None,
    search: Search = None,
    ordering: Ordering = None,
) -> dict[str, Any]:
    stmt = select(Geo)
    if country_code is not None:
        stmt = stmt.where(Geo.country_code == country_code.upper())
    # Region and city match whole values, case-insensitively; `search` matches substrings.
    if region is not None:
        stmt = stmt.where(func.lower(Geo.region) == region.lower())
    if city is not None:
        stmt = stmt.where(func.lower(Geo.city) == city.lower())
    if timezone is not None:
        stmt = stmt.where(Geo.timezone == timezone)
    if search:
        pattern = like_pattern(search)
        stmt = stmt.where(or_(Geo.region.ilike(pattern), Geo.city.ilike(pattern)))
    stmt = apply_ordering(stmt, ordering, ORDERING, tiebreak=Geo.id)
    return paginate(session, stmt, page, request, GeoOut.model_validate)


@router.post("/", response_model=GeoOut, status_code=201, summary="Create a geo entry")
def create_geo(body: GeoCreate, session: SessionDep, admin: AdminDep, client: ClientDep) -> Geo:
    geo = Geo(**body.model_dump())
    insert_audited(session, geo, AUDITED, user=admin, client=client, entity_type="geo")
    return commit_and_refresh(session, geo)


@router.get("/{geo_id}/", response_model=GeoOut, summary="Read a geo entry")
def read_geo(geo_id: IdPath, session: SessionDep, _: UserDep) -> Geo:
    return get_geo_or_404(session, geo_id)


def _update(
    session: SessionDep, admin: AdminDep, client: ClientDep, geo_id: int, data: dict[str, Any]
) -> Geo:
    geo = get_geo_or_404(session, geo_id, for_update=True)
    apply_update(session, geo, data, user=admin, client=client, entity_type="geo")
    return commit_and_refresh(session, geo)


@router.put("/{geo_id}/", response_model=GeoOut, summary="Replace a geo entry")
def replace_geo(
    geo_id: IdPath, body: GeoReplace, session: SessionDep, admin: AdminDep, client: ClientDep
) -> Geo:
    return _update(session, admin, client, geo_id, body.model_dump())


@router.patch("/{geo_id}/", response_model=GeoOut, summary="Update geo fields")
def patch_geo(
    geo_id: IdPath, body: GeoPatch, session: SessionDep, admin: AdminDep, client: ClientDep
) -> Geo:
    return _update(session, admin, client, geo_id, body.model_dump(exclude_unset=True))


@router.delete("/{geo_id}/", status_code=204, summary="Delete an unused geo entry")
def delete_geo(geo_id: IdPath, session: SessionDep, admin: AdminDep, client: ClientDep) -> Response:
    geo = get_geo_or_404(session, geo_id, for_update=True)
    in_use = session.scalar(
        select(
            exists().where(ProjectGeo.geo_id == geo.id)
            | exists().where(PhoneNumber.geo_id == geo.id)
        )
    )
    if in_use:
        raise conflict("Geo entry is linked to projects or numbers; unlink it first.")
    before = audit.snapshot(geo, AUDITED)
    session.delete(geo)
    audit.record(
        session,
        action="delete",
        user=admin,
        entity_type="geo",
        entity_id=geo_id,
        changes=audit.diff(before, dict.fromkeys(AUDITED)),
        client=client,
    )
    session.commit()
    return Response(status_code=204)
