"""/api/phone-numbers/ in bulk: create up to 100,000 numbers (JSON or a CSV upload, through the
COPY loader: api/number_bulk.py) and set fields for ids or a filter (one UPDATE).
Scope as everywhere under /api/phone-numbers/ (api/number_scope.py)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from sqlalchemy import BigInteger, bindparam, exists, func, or_, select, update
from sqlalchemy.dialects.postgresql import ARRAY, distinct_on
from sqlalchemy.orm import aliased

from api import audit
from api.deps import ClientDep, SessionDep, SettingsDep, UserDep
from api.errors import FieldError
from api.number_bulk import bulk_create_endpoint
from api.number_scope import check_refs, parse_filters, scoped
from api.openapi import body_schema
from api.schemas.numbers import BulkCreateIn, BulkCreateOut, BulkUpdateIn, BulkUpdateOut
from api.scope import get_project_or_404
from api.strict_query import StrictQuery
from models.dialing.queue import reschedule
from models.number_filters import NumberFilters, filters_as_params, number_conditions
from models.number_transitions import sources_for
from models.tables import PhoneNumber

router = APIRouter(prefix="/api/phone-numbers", tags=["phone numbers"], dependencies=[StrictQuery])

T = PhoneNumber.__table__

router.add_api_route(
    "/bulk/",
    bulk_create_endpoint,
    methods=["POST"],
    response_model=BulkCreateOut,
    summary="Create up to 100,000 numbers (JSON) or a CSV upload, via the COPY loader",
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {"schema": body_schema(BulkCreateIn)},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["project_id", "file"],
                        "properties": {
                            "project_id": {"type": "integer"},
                            "provider_id": {"type": "integer"},
                            "geo_id": {"type": "integer"},
                            "region": {"type": "string"},
                            "encoding": {"type": "string", "default": "utf-8"},
                            "file": {"type": "string", "format": "binary"},
                        },
                    }
                },
            },
            "required": True,
        }
    },
)


@router.post(
    "/bulk-update/", response_model=BulkUpdateOut, summary="Set fields for ids or a filter"
)
def bulk_update(
    body: BulkUpdateIn,
    session: SessionDep,
    user: UserDep,
    settings: SettingsDep,
    client: ClientDep,
) -> BulkUpdateOut:
    if (body.ids is None) == (body.filter is None):
        raise FieldError("non_field_errors", "Give exactly one of `ids` or `filter`.")
    if body.force and not user.is_admin:
        raise HTTPException(status_code=403, detail="Only administrators may force a status.")
    new = body.changes.model_dump(include=body.changes.model_fields_set)
    if not new:
        raise FieldError("set", "Nothing to set: give status, provider_id, geo_id or project_id.")
    if "status" in new and new["status"] is None:
        raise FieldError("set.status", "Status cannot be null.")
    if "project_id" in new and new["project_id"] is None:
        raise FieldError("set.project_id", "project_id cannot be null.")
    check_refs(session, new.get("provider_id"), new.get("geo_id"), prefix="set.")
    target = new.get("project_id")
    if target is not None:
        get_project_or_404(session, user, target)

    if body.filter is not None:
        if not body.filter:
            raise FieldError("filter", "An empty filter would select every number; narrow it.")
        requested = parse_filters(body.filter, settings.phone_region, prefix="filter.")
        selection = number_conditions(scoped(session, user, requested))
    else:
        requested = None
        ids = bindparam("ids", sorted(set(body.ids or [])), type_=ARRAY(BigInteger))
        selection = [
            T.c.id == func.any(ids),
            *number_conditions(scoped(session, user, NumberFilters())),
        ]

    # Only rows that really change; a forbidden status transition leaves the row alone.
    changing = or_(*(T.c[k].is_distinct_from(v) for k, v in new.items()))
    conditions = [*selection, changing]
    if "status" in new and not body.force:
        conditions.append(T.c.status.in_(sources_for(new["status"])))
    if target is not None:
        # A number the target project already has stays where it is (uniqueness per project).
        other = aliased(PhoneNumber)
        conditions.append(
            or_(
                T.c.project_id == target,
                ~exists().where(other.project_id == target, other.phone_number == T.c.phone_number),
            )
        )
        # Two selected rows with the same phone: the lowest id moves, the other stays.
        first = (
            select(T.c.id)
            .where(*conditions)
            .ext(distinct_on(T.c.phone_number))
            .order_by(T.c.phone_number, T.c.id)
            .correlate(None)  # its own scan of phone_numbers, not the UPDATE's row
        )
        conditions = [T.c.id.in_(first)]

    matched = session.scalar(select(func.count()).select_from(T).where(*selection)) or 0
    if body.dry_run:
        would = session.scalar(select(func.count()).select_from(T).where(*conditions)) or 0
        return BulkUpdateOut(dry_run=True, matched=matched, updated=would)

    if "status" in new:
        # New outcomes: end their leases, schedule their next attempts (the webhook's rule).
        changed = list(
            session.scalars(update(T).where(*conditions).values(**new).returning(T.c.id))
        )
        reschedule(session, changed)
        updated = len(changed)
    else:
        result = session.execute(update(T).where(*conditions).values(**new))
        updated = result.rowcount  # type: ignore[attr-defined]
    audit.record(
        session,
        action="bulk_update",
        user=user,
        entity_type="phone_number",
        changes={
            "filter": filters_as_params(requested) if requested else None,
            "ids": len(body.ids) if body.ids is not None else None,
            "set": new,
            "force": body.force,
            "matched": matched,
            "updated": updated,
        },
        client=client,
    )
    session.commit()
    return BulkUpdateOut(dry_run=False, matched=matched, updated=updated)
