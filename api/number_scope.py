"""Which phone numbers a request reaches, shared by every /api/phone-numbers/ route: the list's
filters read from the query, the user's scope added to them, one number (or 404) and the
reference ids a body may name.

Scope: admins reach every number of a live project, managers those of their memberships;
anything else is 404, including a `project_id` filter naming a project outside the scope.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

from fastapi import Depends, Query
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.deps import CurrentUser, SettingsDep
from api.errors import FieldError, not_found
from api.schemas.common import IsoDateTime
from api.scope import get_project_or_404, visible_project_ids
from models.number_filters import (
    MAX_CALL_ATTEMPTS,
    MAX_ID,
    FilterError,
    NumberFilters,
    with_callable,
)
from models.tables import Geo, PhoneNumber, Project, Provider


def number_filters(
    settings: SettingsDep,
    project_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    status: Annotated[
        list[str] | None,
        Query(description="repeat it or comma-separate: status=new&status=failed,no_answer"),
    ] = None,
    provider_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    geo_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    phone: Annotated[
        str | None,
        Query(
            max_length=64,
            description="a full number in any format (exact match) or its first digits "
            "(prefix of the E.164 form: +7916, 8916 and 916 all mean +7916...)",
        ),
    ] = None,
    created_after: Annotated[IsoDateTime | None, Query(description="created_at >= this")] = None,
    created_before: Annotated[IsoDateTime | None, Query(description="created_at < this")] = None,
    call_attempts_lt: Annotated[int | None, Query(ge=0, le=MAX_CALL_ATTEMPTS)] = None,
    call_attempts_gte: Annotated[int | None, Query(ge=0, le=MAX_CALL_ATTEMPTS)] = None,
    last_call_after: Annotated[
        IsoDateTime | None, Query(description="last_call_at >= this")
    ] = None,
    last_call_before: Annotated[
        IsoDateTime | None, Query(description="last_call_at < this")
    ] = None,
    timezone: Annotated[str | None, Query(max_length=64, description="IANA zone")] = None,
    region: Annotated[str | None, Query(max_length=255, description="registry region")] = None,
    timezone_source: Annotated[
        str | None, Query(max_length=100, description="comma-separated: geo,registry,...")
    ] = None,
    callable_now: Annotated[
        bool | None,
        Query(description="may be called at this moment (local hours, holidays, schedule, DNC)"),
    ] = None,
    eligible_now: Annotated[
        bool | None,
        Query(
            description="the dial queue could hand it out now (its eligibility rule: project "
            "active, rules, retries, leases, DNC, callable hours; docs/dial-queue.md)"
        ),
    ] = None,
    include_dnc: Annotated[
        bool | None, Query(description="exports: keep do-not-call numbers (default: left out)")
    ] = None,
    source_load_id: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="inserted by this load (GET /api/imports/)")
    ] = None,
) -> NumberFilters:
    params: dict[str, Any] = {
        "project_id": project_id,
        "status": ",".join(status) if status else None,
        "provider_id": provider_id,
        "geo_id": geo_id,
        "phone": phone,
        "created_after": created_after,
        "created_before": created_before,
        "call_attempts_lt": call_attempts_lt,
        "call_attempts_gte": call_attempts_gte,
        "last_call_after": last_call_after,
        "last_call_before": last_call_before,
        "timezone": timezone,
        "region": region,
        "timezone_source": timezone_source,
        "callable_now": callable_now,
        "eligible_now": eligible_now,
        "include_dnc": include_dnc,
        "source_load_id": source_load_id,
    }
    return parse_filters({k: v for k, v in params.items() if v is not None}, settings.phone_region)


FiltersDep = Annotated[NumberFilters, Depends(number_filters)]


def parse_filters(params: dict[str, Any], region: str, prefix: str = "") -> NumberFilters:
    try:
        return NumberFilters.from_params(params, region=region)
    except FilterError as exc:
        raise FieldError(prefix + exc.field, str(exc)) from None


def scoped(session: Session, user: CurrentUser, f: NumberFilters) -> NumberFilters:
    """The filter restricted to the user's scope; 404 if it names a project outside it; with
    callable_now's predicate for this moment (models/dialing/eligibility.py)."""
    return with_callable(session, _scoped(session, user, f))


def _scoped(session: Session, user: CurrentUser, f: NumberFilters) -> NumberFilters:
    if f.project_id is not None:
        get_project_or_404(session, user, f.project_id)
        return f  # one visible project: nothing wider to restrict
    if (
        user.is_admin
        and session.scalar(select(Project.id).where(Project.is_deleted).limit(1)) is None
    ):
        return f  # no deleted project: an admin sees every number
    return replace(f, project_ids=tuple(session.scalars(visible_project_ids(user)).all()))


def number_or_404(
    session: Session, user: CurrentUser, number_id: int, *, for_update: bool = False
) -> PhoneNumber:
    stmt = select(PhoneNumber).where(
        PhoneNumber.id == number_id, PhoneNumber.project_id.in_(visible_project_ids(user))
    )
    number = session.scalar(stmt.with_for_update(of=PhoneNumber) if for_update else stmt)
    if number is None:
        raise not_found("Phone number not found.")
    return number


def check_refs(
    session: Session, provider_id: int | None, geo_id: int | None, prefix: str = ""
) -> None:
    """Providers and geo are reference data every user may read: unknown ids are a 400."""
    errors: dict[str, list[str]] = {}
    if provider_id is not None and session.get(Provider, provider_id) is None:
        errors[prefix + "provider_id"] = [f"Provider {provider_id} does not exist."]
    if geo_id is not None and session.get(Geo, geo_id) is None:
        errors[prefix + "geo_id"] = [f"Geo {geo_id} does not exist."]
    if errors:
        raise FieldError(errors)
