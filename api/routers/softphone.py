"""SoftPhone extension point: the signed call-event webhook and the agent's pop-up lookup.

Webhook answers (one event / a JSON array of up to 1000):
  200 every event stored and applied, or already stored (duplicate: no effect);
  202 some events stored but unmatched (unknown number or project): kept, nothing applied;
  207 a batch where some events are invalid (reported by index, not stored) and others stored;
  400 nothing stored (a single invalid event answers in the `{field: [messages]}` contract).
Ordering and project-resolution rules: models/call_events.py.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
from collections import Counter
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Row, bindparam, literal_column, select
from starlette.concurrency import run_in_threadpool

from api import popup_dialing
from api.deps import SettingsDep, bearer, token_claims, unauthorized, user_of
from api.errors import FieldError, field_errors, not_found
from api.event_batcher import EventBatcher
from api.observability import WEBHOOK_EVENTS
from api.schemas.softphone import (
    CallEventIn,
    EventResult,
    GeoRef,
    LastResult,
    LoadRef,
    NumberCard,
    PopupResponse,
    ProjectRef,
    ProviderRef,
    RecentEvent,
    WebhookResponse,
)
from api.scope import project_filter
from api.webhook_auth import SignedBody
from models.call_events import MAX_BATCH, EventIn
from models.phones import InvalidPhone, normalize_phone, phone_metadata
from models.prepared import execute_prepared
from models.settings import Settings
from models.tables import Geo, NumberLoad, PhoneNumber, Project, Provider

router = APIRouter(prefix="/api/softphone", tags=["softphone"])
WEBHOOK_PATH = "/api/softphone/webhook/"

_event = TypeAdapter(CallEventIn)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _error_text(exc: ValidationError) -> dict[str, list[str]]:
    return field_errors(exc.errors())  # the contract's field names and messages


def _reason(errors: dict[str, list[str]]) -> str:
    return "; ".join(f"{field}: {', '.join(msgs)}" for field, msgs in errors.items())


def _parse(
    raw: object, region: str, latest: dt.datetime
) -> tuple[EventIn | None, dict[str, list[str]] | None]:
    """One raw event -> (EventIn, None) or (None, {field: [messages]})."""
    if not isinstance(raw, dict):
        return None, {"non_field_errors": ["An event must be a JSON object."]}
    try:
        event = _event.validate_python(raw)
    except ValidationError as exc:
        return None, _error_text(exc)
    try:
        phone = normalize_phone(event.phone_number, region)
    except InvalidPhone as exc:
        return None, {"phone_number": [exc.reason]}
    occurred = event.occurred_at
    if occurred.tzinfo is None:
        occurred = occurred.replace(tzinfo=dt.UTC)
    if occurred > latest:  # a far-future event would win the ordering rule forever
        return None, {"occurred_at": ["In the future (beyond the allowed clock skew)."]}
    payload = json.dumps(raw, ensure_ascii=False, separators=(",", ":"))
    if "\\u0000" in payload:
        return None, {"non_field_errors": ["NUL characters cannot be stored."]}
    return EventIn(
        event_id=event.event_id,
        event_type=event.event_type,
        phone_number=phone,
        occurred_at=occurred,
        payload=payload,
        project_id=event.project_id,
        project_code=event.project_code,
    ), None


@router.post(
    WEBHOOK_PATH.removeprefix(router.prefix),
    response_model=WebhookResponse,
    summary="Call events from the softphone (signed; one event or a batch)",
    responses={
        202: {"description": "stored, but some events matched no number", "model": WebhookResponse},
        207: {"description": "a batch with invalid events (by index)", "model": WebhookResponse},
        401: {"description": "missing, invalid or stale signature"},
    },
)
async def webhook(body: SignedBody, request: Request, settings: SettingsDep) -> Response:
    # At run time api/webhook_fastpath.py answers this path before the router; both call this.
    return await process_webhook(body, settings, request.app.state.event_batcher)


async def process_webhook(body: bytes, settings: Settings, batcher: EventBatcher) -> Response:
    """A verified body -> the answer (FieldError for a 400)."""
    try:
        data = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise FieldError("non_field_errors", "Malformed JSON body.") from exc
    batch = isinstance(data, list)
    items: list[object] = data if batch else [data]
    if batch and not items:
        raise FieldError("non_field_errors", "Empty batch.")
    if len(items) > MAX_BATCH:
        raise FieldError("non_field_errors", f"At most {MAX_BATCH} events per request.")

    latest = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=settings.softphone_max_skew_seconds)
    results: list[EventResult | None] = [None] * len(items)
    valid: list[tuple[int, EventIn]] = []
    for index, raw in enumerate(items):
        event, errors = _parse(raw, settings.phone_region, latest)
        if event is None:
            assert errors is not None
            if not batch:
                raise FieldError(errors)
            event_id = raw.get("event_id") if isinstance(raw, dict) else None
            results[index] = EventResult(
                index=index,
                event_id=event_id if isinstance(event_id, str) else None,
                result="error",
                reason=_reason(errors),
            )
        else:
            valid.append((index, event))

    if valid:
        # Grouped with concurrent requests into one transaction (api/event_batcher.py).
        outcomes = await batcher.submit([e for _, e in valid])
        for (index, _), done in zip(valid, outcomes, strict=True):
            results[index] = EventResult(
                index=index,
                event_id=done.event_id,
                result=done.result,  # type: ignore[arg-type]
                reason=done.reason,
                phone_number_id=done.phone_number_id,
                project_id=done.project_id,
            )
    final = [r for r in results if r is not None]
    counts = Counter(r.result for r in final)
    for outcome_name, n in counts.items():
        WEBHOOK_EVENTS.labels(outcome_name).inc(n)
    response = WebhookResponse(
        received=len(items),
        accepted=counts["accepted"],
        duplicates=counts["duplicate"],
        unmatched=counts["unmatched"],
        errors=counts["error"],
        results=final,
    )
    status = 200
    if counts["error"]:
        status = 207 if valid else 400
    elif counts["unmatched"]:
        status = 202
    return Response(response.model_dump_json(), status_code=status, media_type="application/json")


# --- pop-up ---------------------------------------------------------------------------------


def _service_key(settings: Settings, x_api_key: str | None) -> bool:
    """True for the softphone service key (it reads cards and works the dial queue, nothing
    more); 401 for a wrong one; False when none was sent (a user token is needed then)."""
    if x_api_key is None:
        return False
    key = settings.softphone_api_key
    if not key or not hmac.compare_digest(x_api_key.encode(), key.encode()):
        raise unauthorized("Invalid API key.")
    return True


is_service_key = _service_key  # the dial queue (api/routers/dial_queue.py) takes the key too


# Correlated on phone_numbers.id: the last 10 events through ix_call_events_number_occurred
# (a backward index scan, stopped after 10), and the latest result, in the same round trip.
_RECENT_EVENTS = literal_column(
    """(SELECT coalesce(jsonb_agg(jsonb_build_object(
            'event_id', e.event_id, 'event_type', e.event_type, 'occurred_at', e.occurred_at,
            'received_at', e.received_at, 'call_id', e.payload->>'call_id',
            'status', e.payload->>'status', 'result_data', e.payload->'result_data')
            ORDER BY e.occurred_at DESC, e.id DESC), '[]'::jsonb)
        FROM (SELECT ce.* FROM call_events ce WHERE ce.phone_number_id = phone_numbers.id
              ORDER BY ce.occurred_at DESC, ce.id DESC LIMIT 10) e)"""
).label("recent_events")
_LAST_RESULT = literal_column(
    """(SELECT jsonb_build_object('event_id', ce.event_id, 'status', ce.payload->>'status',
            'occurred_at', ce.occurred_at, 'result_data', ce.payload->'result_data')
        FROM call_events ce
        WHERE ce.phone_number_id = phone_numbers.id AND ce.event_type = 'call_result'
        ORDER BY ce.occurred_at DESC, ce.id DESC LIMIT 1)"""
).label("last_result")


def _json_object(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def _zone(name: str | None) -> ZoneInfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _card(row: Row[Any], phone_zone: str | None, now: dt.datetime) -> NumberCard:
    zone, source = _zone(row.geo_timezone), "geo"
    if zone is None:
        zone, source = _zone(phone_zone), "phone"
    last = row.last_result
    return NumberCard(
        id=row.id,
        phone_number=row.phone_number,
        project=ProjectRef(id=row.project_id, code=row.project_code, name=row.project_name),
        provider=ProviderRef(id=row.provider_id, code=row.provider_code, name=row.provider_name)
        if row.provider_id is not None
        else None,
        geo=GeoRef(
            id=row.geo_id,
            country_code=row.geo_country_code,
            region=row.geo_region,
            city=row.geo_city,
            timezone=row.geo_timezone,
        )
        if row.geo_id is not None
        else None,
        timezone=zone.key if zone else None,
        timezone_source=source if zone else None,  # type: ignore[arg-type]
        local_time=now.astimezone(zone) if zone else None,
        status=row.status,
        call_attempts=row.call_attempts,
        last_call_at=row.last_call_at,
        last_result=LastResult(
            event_id=last["event_id"],
            status=last["status"],
            occurred_at=last["occurred_at"],
            result_data=_json_object(last["result_data"]),
        )
        if last
        else None,
        result_data=row.result_data,
        attributes=row.attributes,
        recent_events=[
            RecentEvent(**{**e, "result_data": _json_object(e.get("result_data"))})
            for e in row.recent_events
        ],
        created_at=row.created_at,
        updated_at=row.updated_at,
        source_load=LoadRef(
            id=row.load_id, kind=row.load_kind, source=row.load_source, created_at=row.load_at
        )
        if row.load_id is not None
        else None,
    )


# Built once: the pop-up is the agent's hot read path (a manager adds a scope condition).
_POPUP = (
    select(
        PhoneNumber.id,
        PhoneNumber.phone_number,
        PhoneNumber.status,
        PhoneNumber.call_attempts,
        PhoneNumber.last_call_at,
        PhoneNumber.result_data,
        PhoneNumber.attributes,
        PhoneNumber.created_at,
        PhoneNumber.updated_at,
        Project.id.label("project_id"),
        Project.code.label("project_code"),
        Project.name.label("project_name"),
        Provider.id.label("provider_id"),
        Provider.code.label("provider_code"),
        Provider.name.label("provider_name"),
        Geo.id.label("geo_id"),
        Geo.country_code.label("geo_country_code"),
        Geo.region.label("geo_region"),
        Geo.city.label("geo_city"),
        Geo.timezone.label("geo_timezone"),
        _RECENT_EVENTS,
        _LAST_RESULT,
        NumberLoad.id.label("load_id"),
        NumberLoad.kind.label("load_kind"),
        NumberLoad.source.label("load_source"),
        NumberLoad.created_at.label("load_at"),
        *popup_dialing.COLUMNS,
    )
    .select_from(PhoneNumber)
    .join(Project, (Project.id == PhoneNumber.project_id) & Project.is_deleted.is_(False))
    .outerjoin(Provider, Provider.id == PhoneNumber.provider_id)
    .outerjoin(Geo, Geo.id == PhoneNumber.geo_id)
    # Only a load of the number's own project: a number moved since keeps its source_load_id,
    # but the load (its file path names the first project) is not this project's to show.
    .outerjoin(
        NumberLoad,
        (NumberLoad.id == PhoneNumber.source_load_id)
        & (NumberLoad.project_id == PhoneNumber.project_id),
    )
    .outerjoin(popup_dialing.JOIN_TARGET, popup_dialing.JOIN_ON)
    .where(PhoneNumber.phone_number == bindparam("phone"))
    .order_by(PhoneNumber.created_at.desc(), PhoneNumber.id.desc())
)


@router.get(
    "/number/{phone:path}/",
    response_model=PopupResponse,
    summary="The agent's pop-up: a number's cards in every project the caller may see",
    responses={404: {"description": "no such number (in the caller's projects)"}},
)
async def popup(
    phone: str,
    request: Request,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    x_api_key: Annotated[str | None, Header(description="the softphone service key")] = None,
) -> Response:
    """A user token (managers see their projects only) or the softphone's read-only service key
    (`X-API-Key`)."""
    claims = None if _service_key(settings, x_api_key) else token_claims(settings, credentials)
    engine = request.app.state.engine

    def lookup() -> tuple[str, list[NumberCard]]:
        # One thread hop and one statement for the user check, the cards and their dialing.
        # A bare connection (no ORM session to set up) in autocommit: reads only, so no BEGIN
        # before the query and no ROLLBACK when it goes back to the pool - two round trips of
        # the four a transaction would cost (the pool's ping is the other).
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            stmt = _POPUP
            if claims is not None:  # who asks, before anything about what (401 before 400)
                user = user_of(conn, claims)
                if not user.is_admin:
                    stmt = stmt.where(project_filter(user, PhoneNumber.project_id))
            try:
                e164 = normalize_phone(phone, settings.phone_region)
            except InvalidPhone as exc:
                raise FieldError("phone", exc.reason) from exc
            now = dt.datetime.now(dt.UTC)
            values = {"phone": e164, **popup_dialing.params(now)}
            # Prepared (models/prepared.py): planning is nine tenths of this statement's cost.
            # A manager's scope condition varies per user: that one runs plainly.
            rows = execute_prepared(conn, stmt, values, prepare=stmt is _POPUP)
        if not rows:
            return e164, []
        # A number's own zone only when unambiguous: Russian mobiles list all 16 of Russia's.
        zones = phone_metadata(e164, settings.phone_region)["time_zones"]
        cards = [_card(row, zones[0] if len(zones) == 1 else None, now) for row in rows]
        return e164, popup_dialing.with_dialing(rows, cards, now, settings)

    e164, cards = await run_in_threadpool(lookup)
    if not cards:
        raise not_found("Number not found.")
    body = PopupResponse(phone_number=e164, count=len(cards), results=cards)
    return Response(body.model_dump_json(), media_type="application/json")
