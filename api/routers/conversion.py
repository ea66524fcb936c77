"""Conversion: a project's snapshots, recalculation requests, and the dbt marts by provider,
geo and day. Metrics are defined once, in dbt_project/; the API only reads what dbt wrote:
`public.project_conversions` (a snapshot per project per run) and the `analytics` marts.

The `analytics` schema appears with the first dbt run: until then the mart endpoints answer an
empty page, never an error. Scope is part of every query: rows of projects outside the caller's
scope (or deleted) are never read; the all-projects ("overall") marts are for admins only.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from pydantic import BeforeValidator
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    TableClause,
    column,
    func,
    null,
    select,
    table,
)
from sqlalchemy.orm import Session

from api import audit
from api.deps import ClientDep, CurrentUser, SessionDep, UserDep
from api.errors import FieldError, not_found
from api.pagination import Page, PageDep, apply_ordering, paginate
from api.schemas.common import IdPath, IdQuery, IsoDateTime, Ordering
from api.schemas.conversion import (
    ConversionCurrent,
    ConversionRequestOut,
    ConversionSnapshot,
    DailyCallOutcomes,
    GeoConversion,
    ProviderConversion,
)
from api.scope import get_project_or_404, project_filter, visible_project_ids
from api.strict_query import StrictQuery
from models.tables import ConversionRequest, ProjectConversion

router = APIRouter(tags=["conversion"], dependencies=[StrictQuery])

ANALYTICS = "analytics"
METRICS = (
    "total_numbers",
    "processed_numbers",
    "in_progress_numbers",
    "success_numbers",
    "failed_numbers",
    "no_answer_numbers",
    "conversion_rate",
    "call_attempts",
    "last_call_at",
    "calculated_at",
)
PROVIDER_DIMS = ("provider_id", "provider_code", "provider_name")
GEO_DIMS = ("geo_id", "country_code", "region", "city")
DAILY = (
    "project_id",
    "call_date",
    "events",
    "calls_started",
    "calls",
    "results",
    "success_results",
    "failed_results",
    "no_answer_results",
    "other_results",
    "success_rate",
)


def _mart(name: str, *columns: str) -> TableClause:
    return table(name, *(column(c) for c in columns), schema=ANALYTICS)


PROVIDER = _mart("fct_provider_conversion", "project_id", *PROVIDER_DIMS, *METRICS)
PROVIDER_OVERALL = _mart("fct_provider_conversion_overall", *PROVIDER_DIMS, *METRICS)
GEO = _mart("fct_geo_conversion", "project_id", *GEO_DIMS, *METRICS)
GEO_OVERALL = _mart("fct_geo_conversion_overall", *GEO_DIMS, *METRICS)
DAILY_MART = _mart("fct_daily_call_outcomes", *DAILY)
RATE_ORDERING = (
    "conversion_rate",
    "total_numbers",
    "processed_numbers",
    "success_numbers",
    "call_attempts",
    "last_call_at",
)


def _iso_date(value: object) -> object:
    # The contract is ISO 8601: pydantic alone would also read '0.5' or '1700000000' as a date.
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError as exc:
            raise ValueError("Give an ISO 8601 date, e.g. 2024-05-01.") from exc
    return value


IsoDate = Annotated[dt.date, BeforeValidator(_iso_date)]
DateQuery = Annotated[IsoDate | None, Query(description="ISO 8601 date (YYYY-MM-DD)")]


def _mart_exists(session: Session, mart: TableClause) -> bool:
    name = f"{ANALYTICS}.{mart.name}"
    return session.scalar(select(func.to_regclass(name))) is not None


def _empty_page() -> dict[str, Any]:
    return {"count": 0, "next": None, "previous": None, "results": []}


# --- a project's conversion -------------------------------------------------------------------


@router.get(
    "/api/projects/{project_id}/conversion/",
    response_model=ConversionCurrent | Page[ConversionSnapshot],
    summary="The project's latest conversion snapshot, or its history (?history=true)",
    description="Latest: the newest snapshot; a project never computed yet answers 200 with "
    "`computed: false` and null metrics. `history=true`: every snapshot as a page, oldest "
    "first (`ordering=-calculated_at` for newest first), `from` inclusive, `to` exclusive.",
)
def project_conversion(
    project_id: IdPath,
    request: Request,
    session: SessionDep,
    user: UserDep,
    page: PageDep,
    history: bool = False,
    from_: Annotated[
        IsoDateTime | None, Query(alias="from", description="calculated_at >= this")
    ] = None,
    to: Annotated[IsoDateTime | None, Query(description="calculated_at < this")] = None,
    ordering: Ordering = None,
) -> dict[str, Any]:
    get_project_or_404(session, user, project_id)
    pc = ProjectConversion
    if not history:
        misplaced = {
            name: ["Only with history=true."]
            for name, value in (("from", from_), ("to", to), ("ordering", ordering))
            if value is not None
        }
        if misplaced:
            raise FieldError(misplaced)
        latest = session.scalar(
            select(pc).where(pc.project_id == project_id).order_by(pc.calculated_at.desc()).limit(1)
        )
        out: dict[str, Any] = {"project_id": project_id, "computed": latest is not None}
        out["snapshot_id"] = latest.id if latest else None
        for name in METRICS:
            out[name] = getattr(latest, name) if latest else None
        return out
    from_, to = _utc(from_), _utc(to)
    if from_ is not None and to is not None and from_ >= to:
        raise FieldError("from", "Must be earlier than `to`.")
    stmt = select(pc).where(pc.project_id == project_id)
    if from_ is not None:
        stmt = stmt.where(pc.calculated_at >= from_)
    if to is not None:
        stmt = stmt.where(pc.calculated_at < to)
    stmt = apply_ordering(
        stmt, ordering, {"calculated_at": pc.calculated_at}, default=("calculated_at",),
        tiebreak=pc.id,
    )  # fmt: skip
    return paginate(session, stmt, page, request, ConversionSnapshot.model_validate)


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    # A naive instant is UTC, whatever the server's zone (as in the numbers filters).
    return value.replace(tzinfo=dt.UTC) if value and value.tzinfo is None else value


def _request_out(request: Request, row: ConversionRequest) -> dict[str, Any]:
    out = ConversionRequestOut.model_validate(
        {
            **{c: getattr(row, c) for c in ConversionRequestOut.model_fields if c != "url"},
            "url": str(request.url_for("read_conversion_request", request_id=row.id)),
        }
    )
    return out.model_dump()


@router.post(
    "/api/projects/{project_id}/recalculate-conversion/",
    response_model=ConversionRequestOut,
    status_code=202,
    summary="Request a conversion refresh of the project (a pending request; poll its url)",
    description="Inserts a pending `conversion_requests` row that a Dagster sensor turns into a "
    "dbt run. While a request for the project is still pending, asking again returns that "
    "request instead of queueing a second run.",
)
def recalculate_conversion(
    project_id: IdPath,
    request: Request,
    response: Response,
    session: SessionDep,
    user: UserDep,
    client: ClientDep,
) -> dict[str, Any]:
    # The row lock serialises requests for one project, so two clicks queue one refresh.
    get_project_or_404(session, user, project_id, for_update=True)
    cr = ConversionRequest
    row = session.scalar(
        select(cr).where(cr.project_id == project_id, cr.status == "pending").order_by(cr.id)
    )
    if row is None:
        row = ConversionRequest(project_id=project_id, status="pending", requested_by=user.id)
        session.add(row)
        session.flush()
        audit.record(
            session,
            action="conversion.requested",
            user=user,
            entity_type="conversion_request",
            entity_id=row.id,
            changes={"project_id": [None, project_id], "status": [None, "pending"]},
            client=client,
        )
        session.commit()
        session.refresh(row)
    out = _request_out(request, row)
    response.headers["Location"] = out["url"]
    return out


@router.get(
    "/api/conversion/requests/{request_id}/",
    response_model=ConversionRequestOut,
    summary="Status of a conversion refresh request",
)
def read_conversion_request(
    request_id: IdPath, request: Request, session: SessionDep, user: UserDep
) -> dict[str, Any]:
    cr = ConversionRequest
    visible = project_filter(user, cr.project_id)
    if user.is_admin:  # project NULL = every project: an admin's request
        visible = visible | cr.project_id.is_(None)
    row = session.scalar(select(cr).where(cr.id == request_id, visible))
    if row is None:
        raise not_found("Conversion request not found.")
    return _request_out(request, row)


# --- the marts ----------------------------------------------------------------------------------


def _mart_page(
    session: Session,
    request: Request,
    page: Any,
    stmt: Select[Any],
    mart: TableClause,
    scope: str,
) -> dict[str, Any]:
    if not _mart_exists(session, mart):
        return _empty_page()
    return paginate(
        session, stmt, page, request, lambda r: {**r._mapping, "scope": scope}, scalars=False
    )


def _ordered(
    stmt: Select[Any], ordering: str | None, mart: TableClause, dims: tuple[str, ...]
) -> Select[Any]:
    keys = [c for c in ("project_id", dims[0]) if c in mart.c]
    allowed = {name: mart.c[name] for name in (*RATE_ORDERING, *keys)}
    stmt = apply_ordering(stmt, ordering, allowed, default=keys)
    # A stable order whatever was asked: the mart's key, NULL (no provider/geo) last.
    return stmt.order_by(*(mart.c[k].asc().nulls_last() for k in keys))


def _breakdown(
    session: Session,
    request: Request,
    user: CurrentUser,
    page: Any,
    *,
    per_project: TableClause,
    overall_mart: TableClause,
    dims: tuple[str, ...],
    dim_id: int | None,
    project_id: int | None,
    overall: bool,
    ordering: str | None,
) -> dict[str, Any]:
    if overall:
        if project_id is not None:
            raise FieldError("overall", "Give either project_id or overall=true, not both.")
        if not user.is_admin:
            # The overall marts aggregate every project: they would reveal projects a manager
            # does not belong to.
            raise HTTPException(403, "Only administrators may read the all-projects figures.")
        mart, scope = overall_mart, "overall"
        stmt = select(*(mart.c[c] for c in (*dims, *METRICS)), _null_project())
    else:
        if project_id is not None:
            get_project_or_404(session, user, project_id)
        mart, scope = per_project, "project"
        stmt = select(*mart.c).where(_in_scope(user, mart.c.project_id, project_id))
    if dim_id is not None:
        stmt = stmt.where(mart.c[dims[0]] == dim_id)
    stmt = _ordered(stmt, ordering, mart, dims)
    return _mart_page(session, request, page, stmt, mart, scope)


def _null_project() -> ColumnElement[Any]:
    return null().cast(BigInteger).label("project_id")


def _in_scope(
    user: CurrentUser, col: ColumnElement[Any], project_id: int | None
) -> ColumnElement[bool]:
    # Deleted projects stay in a mart until the next dbt run: the scope filter drops them.
    if project_id is not None:
        return col == project_id
    return col.in_(visible_project_ids(user))


OVERALL_HELP = "admins only: the all-projects mart (one row per provider/geo)"


@router.get(
    "/api/conversion/providers/",
    response_model=Page[ProviderConversion],
    summary="Conversion by provider, per project in scope (or overall, admins)",
)
def providers_conversion(
    request: Request,
    session: SessionDep,
    user: UserDep,
    page: PageDep,
    project_id: IdQuery = None,
    provider_id: IdQuery = None,
    overall: Annotated[bool, Query(description=OVERALL_HELP)] = False,
    ordering: Ordering = None,
) -> dict[str, Any]:
    return _breakdown(
        session, request, user, page,
        per_project=PROVIDER, overall_mart=PROVIDER_OVERALL, dims=PROVIDER_DIMS,
        dim_id=provider_id, project_id=project_id, overall=overall, ordering=ordering,
    )  # fmt: skip


@router.get(
    "/api/conversion/geo/",
    response_model=Page[GeoConversion],
    summary="Conversion by geo, per project in scope (or overall, admins)",
)
def geo_conversion(
    request: Request,
    session: SessionDep,
    user: UserDep,
    page: PageDep,
    project_id: IdQuery = None,
    geo_id: IdQuery = None,
    overall: Annotated[bool, Query(description=OVERALL_HELP)] = False,
    ordering: Ordering = None,
) -> dict[str, Any]:
    return _breakdown(
        session, request, user, page,
        per_project=GEO, overall_mart=GEO_OVERALL, dims=GEO_DIMS,
        dim_id=geo_id, project_id=project_id, overall=overall, ordering=ordering,
    )  # fmt: skip


@router.get(
    "/api/conversion/daily/",
    response_model=Page[DailyCallOutcomes],
    summary="SoftPhone calls and results per project and UTC day",
)
def daily_outcomes(
    request: Request,
    session: SessionDep,
    user: UserDep,
    page: PageDep,
    project_id: IdQuery = None,
    date_from: DateQuery = None,
    date_to: DateQuery = None,
    ordering: Ordering = None,
) -> dict[str, Any]:
    if date_from is not None and date_to is not None and date_from > date_to:
        raise FieldError("date_from", "Must not be later than date_to.")
    if project_id is not None:
        get_project_or_404(session, user, project_id)
    m = DAILY_MART
    stmt = select(*m.c).where(_in_scope(user, m.c.project_id, project_id))
    if date_from is not None:
        stmt = stmt.where(m.c.call_date >= date_from)
    if date_to is not None:
        stmt = stmt.where(m.c.call_date <= date_to)
    allowed = {c: m.c[c] for c in ("call_date", "project_id", "calls", "results", "success_rate")}
    stmt = apply_ordering(stmt, ordering, allowed, default=("call_date",))
    stmt = stmt.order_by(m.c.call_date, m.c.project_id)
    if not _mart_exists(session, m):
        return _empty_page()
    return paginate(session, stmt, page, request, lambda r: dict(r._mapping), scalars=False)


__all__ = ["router"]
