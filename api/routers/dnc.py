"""/api/dnc/: do-not-call lists (models/dialing/dnc.py). Managers manage their projects' lists
only; the global list (project_id null) is admins' alone — a manager neither reads nor changes
it, and another project's entries are not found (404). Every change is audited."""

from __future__ import annotations

import codecs
import datetime as dt
import io
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError
from sqlalchemy import or_, select

from api import audit
from api.deps import ClientDep, CurrentUser, SessionDep, SettingsDep, UserDep
from api.errors import FieldError, conflict, not_found
from api.number_bulk import _csv_chunks
from api.pagination import Page, PageDep, paginate
from api.schemas.common import IdPath
from api.schemas.dialing import DncBulkIn, DncBulkOut, DncIn, DncOut, DncPatch
from api.scope import get_project_or_404, member_project_ids
from api.strict_query import StrictQuery
from models.bulk import BulkLoadError, chunked
from models.dialing import dnc
from models.phones import InvalidPhone, normalize_phone
from models.tables import DncEntry

router = APIRouter(prefix="/api/dnc", tags=["do-not-call"], dependencies=[StrictQuery])
_AUDITED = ("project_id", "phone_number", "reason", "source", "expires_at")


def _check_scope(session: SessionDep, user: CurrentUser, project_id: int | None) -> None:
    """May `user` change this list? Global: admins only (403); a project: 404 outside scope."""
    if project_id is None:
        if not user.is_admin:
            raise HTTPException(status_code=403, detail="Only admins manage the global list.")
        return
    get_project_or_404(session, user, project_id)


def _entry_or_404(session: SessionDep, user: CurrentUser, entry_id: int, lock: bool = False):  # type: ignore[no-untyped-def]
    stmt = select(DncEntry).where(DncEntry.id == entry_id)
    if not user.is_admin:  # never the global list, never another project's
        stmt = stmt.where(DncEntry.project_id.in_(member_project_ids(user)))
    entry = session.scalar(stmt.with_for_update() if lock else stmt)
    if entry is None:
        raise not_found("Do-not-call entry not found.")
    return entry


@router.get("/", response_model=Page[DncOut], summary="List do-not-call entries")
def list_dnc(
    request: Request,
    session: SessionDep,
    user: UserDep,
    page: PageDep,
    settings: SettingsDep,
    project_id: Annotated[int | None, Query(ge=1)] = None,
    scope: Annotated[str | None, Query(pattern="^(global|project)$")] = None,
    phone: Annotated[str | None, Query(max_length=64)] = None,
    active: Annotated[bool | None, Query(description="true: not expired")] = None,
) -> dict[str, Any]:
    stmt = select(DncEntry)
    if project_id is not None:
        get_project_or_404(session, user, project_id)
        stmt = stmt.where(DncEntry.project_id == project_id)
    if scope == "global":
        if not user.is_admin:
            raise HTTPException(status_code=403, detail="Only admins read the global list.")
        stmt = stmt.where(DncEntry.project_id.is_(None))
    elif scope == "project":
        stmt = stmt.where(DncEntry.project_id.is_not(None))
    if not user.is_admin:
        stmt = stmt.where(DncEntry.project_id.in_(member_project_ids(user)))
    if phone is not None:
        stmt = stmt.where(DncEntry.phone_number == _normalize(phone, settings, "phone"))
    if active is not None:
        now = dt.datetime.now(dt.UTC)
        live = or_(DncEntry.expires_at.is_(None), DncEntry.expires_at > now)
        stmt = stmt.where(live if active else ~live)
    return paginate(session, stmt.order_by(DncEntry.id), page, request, DncOut.model_validate)


def _normalize(raw: str, settings: Any, field: str = "phone_number") -> str:
    try:
        return normalize_phone(raw, settings.phone_region)
    except InvalidPhone as exc:
        raise FieldError(field, f"Invalid phone number: {exc.reason}.") from None


@router.post("/", response_model=DncOut, status_code=201, summary="List one number")
def add_dnc(
    body: DncIn, session: SessionDep, user: UserDep, settings: SettingsDep, client: ClientDep
) -> DncEntry:
    _check_scope(session, user, body.project_id)
    phone = _normalize(body.phone_number, settings)
    existing = session.scalar(
        select(DncEntry.id).where(
            DncEntry.phone_number == phone,
            DncEntry.project_id.is_(None)
            if body.project_id is None
            else DncEntry.project_id == body.project_id,
        )
    )
    if existing is not None:
        raise conflict(f"{phone} is already on this list (entry {existing}).")
    entry = DncEntry(**(body.model_dump() | {"phone_number": phone}), added_by=user.id)
    session.add(entry)
    session.flush()
    changes = audit.created(entry, _AUDITED)
    audit.record(session, action="create", user=user, entity_type="dnc_entry",
                 entity_id=entry.id, changes=changes, client=client)  # fmt: skip
    session.commit()
    session.refresh(entry)
    return entry


@router.get("/{entry_id}/", response_model=DncOut, summary="One do-not-call entry")
def get_dnc(entry_id: IdPath, session: SessionDep, user: UserDep) -> DncEntry:
    return _entry_or_404(session, user, entry_id)


@router.patch("/{entry_id}/", response_model=DncOut, summary="Change reason or expiry")
def patch_dnc(
    entry_id: IdPath, body: DncPatch, session: SessionDep, user: UserDep, client: ClientDep
) -> DncEntry:
    entry = _entry_or_404(session, user, entry_id, lock=True)
    data = body.model_dump(exclude_unset=True)
    if "reason" in data and data["reason"] is None:
        raise FieldError("reason", "reason cannot be null.")
    changes = {k: [getattr(entry, k), v] for k, v in data.items() if getattr(entry, k) != v}
    for key, value in data.items():
        setattr(entry, key, value)
    if changes:
        audit.record(session, action="update", user=user, entity_type="dnc_entry",
                     entity_id=entry.id, changes=changes, client=client)  # fmt: skip
    session.commit()
    session.refresh(entry)
    return entry


@router.delete("/{entry_id}/", status_code=204, summary="Take a number off a list")
def delete_dnc(entry_id: IdPath, session: SessionDep, user: UserDep, client: ClientDep) -> Response:
    entry = _entry_or_404(session, user, entry_id, lock=True)
    changes = {k: [getattr(entry, k), None] for k in _AUDITED}
    audit.record(session, action="delete", user=user, entity_type="dnc_entry",
                 entity_id=entry.id, changes=changes, client=client)  # fmt: skip
    session.delete(entry)
    session.commit()
    return Response(status_code=204)


@router.post("/bulk/", response_model=DncBulkOut, summary="List many numbers (JSON or CSV)")
async def bulk_dnc(
    request: Request,
    session: SessionDep,
    user: UserDep,
    settings: SettingsDep,
    client: ClientDep,
    project_id: Annotated[int | None, Query(ge=1, description="CSV: the list")] = None,
    reason: Annotated[str | None, Query(max_length=1000, description="CSV: the reason")] = None,
    source: Annotated[str | None, Query(max_length=50, description="CSV: the source")] = None,
    expires_at: Annotated[str | None, Query(max_length=64, description="CSV: expiry")] = None,
    encoding: Annotated[str, Query(max_length=32, description="CSV: its encoding")] = "utf-8",
) -> dict[str, Any]:
    """JSON `{project_id, reason, source, expires_at, numbers: [...]}`, or a CSV body
    (`text/csv`, a phone column as for number uploads) with the same fields as query
    parameters. All or nothing; invalid lines are reported, not listed."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            body = DncBulkIn.model_validate_json(await request.body())
        except ValidationError as exc:
            raise _errors(exc) from None
        make = lambda: chunked(body.numbers)  # noqa: E731
    elif content_type == "text/csv":
        given = {"project_id": project_id, "reason": reason, "source": source,
                 "expires_at": expires_at}  # fmt: skip
        try:
            codecs.lookup(encoding)
            body = DncBulkIn.model_validate(
                {k: v for k, v in given.items() if v is not None} | {"numbers": ["-"]}
            )
        except LookupError:
            raise FieldError("encoding", f"Unknown encoding {encoding!r}.") from None
        except ValidationError as exc:
            raise _errors(exc) from None
        raw = io.BytesIO(await request.body())
        make = lambda: _csv_chunks(raw, encoding)  # noqa: E731
    else:
        raise FieldError("non_field_errors", "Send application/json or text/csv.")
    return await run_in_threadpool(_bulk, session, user, settings, client, body, make)


def _errors(exc: ValidationError) -> FieldError:
    errors: dict[str, list[str]] = {}
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "non_field_errors"
        errors.setdefault(field, []).append(err["msg"])
    return FieldError(errors)


def _bulk(session, user, settings, client, body: DncBulkIn, make) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    _check_scope(session, user, body.project_id)
    conn = session.connection()
    try:
        result = dnc.add_bulk(
            conn, project_id=body.project_id, chunks=make(), reason=body.reason,
            source=body.source, expires_at=body.expires_at, added_by=user.id,
            region=settings.phone_region,
        )  # fmt: skip
    except (BulkLoadError, UnicodeDecodeError, LookupError) as exc:
        session.rollback()
        raise FieldError("file", f"Cannot read the upload: {exc}") from None
    counts = {"read": result.read, "added": result.added, "updated": result.updated,
              "invalid": result.invalid}  # fmt: skip
    audit.record(
        session, action="dnc_bulk_add", user=user, entity_type="dnc_list",
        entity_id=body.project_id, client=client,
        changes={"scope": "global" if body.project_id is None else "project",
                 "reason": body.reason, "source": body.source, **counts},
    )  # fmt: skip
    session.commit()
    return {"project_id": body.project_id, "read": result.read, "added": result.added,
            "updated": result.updated, "invalid": result.invalid,
            "rejects": [vars(r) for r in result.rejects]}  # fmt: skip
