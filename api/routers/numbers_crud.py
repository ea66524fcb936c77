"""/api/phone-numbers/ one number at a time: create, read, update (status, refs, result), delete.
Scope as everywhere under /api/phone-numbers/ (api/number_scope.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Response
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from api import audit
from api.crud import apply_update
from api.deps import AdminDep, ClientDep, SessionDep, SettingsDep, UserDep
from api.errors import FieldError, conflict
from api.number_scope import check_refs, number_or_404
from api.schemas.common import IdPath
from api.schemas.numbers import NumberCreate, NumberOut, NumberPatch
from api.scope import get_project_or_404
from api.strict_query import StrictQuery
from models.dialing.queue import reschedule
from models.dialing.resolve import columns_for_session
from models.json_limits import ClippedJson, JsonLimitError, check_json
from models.number_transitions import can_transition, explain
from models.phones import InvalidPhone, normalize_phone
from models.tables import PhoneNumber

router = APIRouter(prefix="/api/phone-numbers", tags=["phone numbers"], dependencies=[StrictQuery])

T = PhoneNumber.__table__


def _normalize(raw: str, region: str, field: str = "phone_number") -> str:
    try:
        return normalize_phone(raw, region)
    except InvalidPhone as exc:
        raise FieldError(field, f"Invalid phone number: {exc.reason}.") from None


@router.post("/", response_model=NumberOut, status_code=201, summary="Create one number")
def create_number(
    body: NumberCreate,
    session: SessionDep,
    user: UserDep,
    settings: SettingsDep,
    client: ClientDep,
) -> PhoneNumber:
    get_project_or_404(session, user, body.project_id)
    phone = _normalize(body.phone_number, settings.phone_region)
    check_refs(session, body.provider_id, body.geo_id)
    values = body.model_dump() | {"phone_number": phone}
    values |= columns_for_session(session, phone, body.geo_id)  # time zone, region, operator
    number = session.scalar(
        insert(PhoneNumber)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[T.c.phone_number, T.c.project_id])
        .returning(PhoneNumber)
    )
    if number is None:
        existing = session.scalar(
            select(PhoneNumber.id).where(
                PhoneNumber.phone_number == phone, PhoneNumber.project_id == body.project_id
            )
        )
        raise conflict(f"{phone} already exists in project {body.project_id} (id {existing}).")
    audit.record(
        session,
        action="create",
        user=user,
        entity_type="phone_number",
        entity_id=number.id,
        changes=audit.created(number, values),
        client=client,
    )
    session.commit()
    return number


@router.get("/{number_id}/", response_model=NumberOut, summary="One number")
def get_number(number_id: IdPath, session: SessionDep, user: UserDep) -> PhoneNumber:
    return number_or_404(session, user, number_id)


@router.patch("/{number_id}/", response_model=NumberOut, summary="Update status, refs, result")
def patch_number(
    number_id: IdPath, body: NumberPatch, session: SessionDep, user: UserDep, client: ClientDep
) -> PhoneNumber:
    if body.force and not user.is_admin:
        raise HTTPException(status_code=403, detail="Only administrators may force a status.")
    number = number_or_404(session, user, number_id, for_update=True)
    sent = body.model_fields_set
    data: dict[str, Any] = {}
    if "status" in sent:
        if body.status is None:
            raise FieldError("status", "Status cannot be null.")
        if not body.force and not can_transition(number.status, body.status):
            raise FieldError("status", explain(number.status, body.status) + ".")
        data["status"] = body.status
    check_refs(
        session,
        body.provider_id if "provider_id" in sent else None,
        body.geo_id if "geo_id" in sent else None,
    )
    for field in ("provider_id", "geo_id"):
        if field in sent:
            data[field] = getattr(body, field)
    if "priority" in sent:
        if body.priority is None:
            raise FieldError("priority", "Priority cannot be null (0 is the default).")
        data["priority"] = body.priority
    if "result_data" in sent:
        if body.result_data_mode == "replace" or body.result_data is None:
            data["result_data"] = body.result_data
        else:
            data["result_data"] = _merged(number.result_data, body.result_data)
    forced = "status" in data and not can_transition(number.status, data["status"])
    changes = apply_update(
        session,
        number,
        data,
        user=user,
        client=client,
        entity_type="phone_number",
        extra_changes={"forced": [False, True]} if forced else None,
    )
    if "status" in (changes or {}):
        # A new outcome: end any lease, schedule the next attempt (the webhook's rule).
        reschedule(session, [number.id])
    session.commit()
    if changes:
        session.refresh(number)
    return number


def _merged(stored: Any, patch: dict[str, Any]) -> dict[str, Any] | None:
    """JSON merge patch, top level: null removes a key. The result is held to the same limits
    as a value sent whole, and a stored value the API cannot read whole (another writer's, or
    from before the limits) is never merged into: writing back a clipped copy would lose it."""
    if stored is not None and (not isinstance(stored, dict) or isinstance(stored, ClippedJson)):
        raise FieldError(
            "result_data",
            "The stored result_data cannot be merged into (it is not a readable JSON object); "
            "send the whole object with result_data_mode: replace.",
        )
    merged = dict(stored or {})
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    try:
        check_json(merged)
    except JsonLimitError as exc:
        raise FieldError(
            "result_data", f"Merged with the stored result_data: {exc} Send less, or replace it."
        ) from None
    return merged or None


@router.delete("/{number_id}/", status_code=204, summary="Delete a number (admins)")
def delete_number(
    number_id: IdPath, session: SessionDep, user: AdminDep, client: ClientDep
) -> Response:
    number = number_or_404(session, user, number_id, for_update=True)
    before = audit.snapshot(number, ("phone_number", "project_id", "status"))
    session.delete(number)
    audit.record(
        session,
        action="delete",
        user=user,
        entity_type="phone_number",
        entity_id=number_id,
        changes={k: [audit._json_safe(v), None] for k, v in before.items()},
        client=client,
    )
    session.commit()
    return Response(status_code=204)
