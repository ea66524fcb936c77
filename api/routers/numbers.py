"""/api/phone-numbers/: list (page or cursor), CRUD, bulk create, bulk update, CSV export.

Scope: every route reaches only numbers of live projects the user may see (admins: all live
projects; managers: their memberships). Anything else is 404, including a `project_id` filter.

`count` at 10M rows (page mode): the planner's row estimate for the filter comes first
(`EXPLAIN`, ~0.3 ms). Under COUNT_EXACT_BELOW rows the exact `COUNT(*)` is cheap (an index-only
scan of at most that many entries) and runs, guarded by a statement timeout in case the estimate
was badly low; above it, or when the exact count times out, the estimate is returned with
`count_is_estimate: true` (typically within a few percent). A page that is not full needs no
count query at all (offset + rows). `?exact_count=true` forces the exact figure.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import StreamingResponse
from psycopg import errors as pg_errors
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    bindparam,
    exists,
    func,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, distinct_on, insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, aliased

from api import audit
from api.crud import apply_update
from api.deps import AdminDep, ClientDep, CurrentUser, SessionDep, SettingsDep, UserDep
from api.errors import FieldError, conflict, not_found
from api.keyset import after, decode_cursor, encode_cursor
from api.number_bulk import bulk_create_endpoint
from api.pagination import MAX_PAGE_SIZE, PageDep, page_links
from api.schemas.common import IsoDateTime
from api.schemas.numbers import (
    BulkCreateOut,
    BulkUpdateIn,
    BulkUpdateOut,
    NumberCreate,
    NumberOut,
    NumberPage,
    NumberPatch,
)
from api.scope import get_project_or_404, visible_project_ids
from models.dialing.queue import reschedule
from models.dialing.resolve import columns_for_session
from models.number_filters import (
    FilterError,
    NumberFilters,
    copy_query,
    filters_as_params,
    number_conditions,
    with_callable,
)
from models.number_transitions import can_transition, explain, sources_for
from models.phones import InvalidPhone, normalize_phone
from models.tables import Geo, PhoneNumber, Project, Provider

router = APIRouter(prefix="/api/phone-numbers", tags=["phone numbers"])

T = PhoneNumber.__table__
COLUMNS = [T.c[name] for name in NumberOut.model_fields]
ORDERINGS: dict[str, ColumnElement[Any] | None] = {
    "id": None,
    "created_at": T.c.created_at,
    "last_call_at": T.c.last_call_at,
}
COUNT_EXACT_BELOW = 100_000
COUNT_UNGUARDED_BELOW = 10_000
EXACT_COUNT_TIMEOUT_MS = 500
EXPORT_BUFFER_BYTES = 256 * 1024


# --- filters and scope ---------------------------------------------------------------------


def number_filters(
    settings: SettingsDep,
    project_id: Annotated[int | None, Query(ge=1)] = None,
    status: Annotated[
        list[str] | None,
        Query(description="repeat it or comma-separate: status=new&status=failed,no_answer"),
    ] = None,
    provider_id: Annotated[int | None, Query(ge=1)] = None,
    geo_id: Annotated[int | None, Query(ge=1)] = None,
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
    call_attempts_lt: Annotated[int | None, Query(ge=0)] = None,
    call_attempts_gte: Annotated[int | None, Query(ge=0)] = None,
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
    include_dnc: Annotated[
        bool | None, Query(description="exports: keep do-not-call numbers (default: left out)")
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
        "include_dnc": include_dnc,
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


def _number_or_404(
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


# --- count ---------------------------------------------------------------------------------


def _compiled(session: Session, stmt: Select[Any]) -> tuple[str, dict[str, Any]]:
    compiled = stmt.compile(
        dialect=session.get_bind().dialect, compile_kwargs={"render_postcompile": True}
    )
    return str(compiled), dict(compiled.params)


def estimate_rows(session: Session, conditions: list[ColumnElement[bool]]) -> int:
    """The planner's row estimate for the filter (statistics only; nothing is scanned)."""
    sql, params = _compiled(session, select(literal_column("1")).select_from(T).where(*conditions))
    plan = session.connection().exec_driver_sql("EXPLAIN (FORMAT JSON) " + sql, params).scalar()
    return int(plan[0]["Plan"]["Plan Rows"])  # type: ignore[index]


def count_rows(
    session: Session, conditions: list[ColumnElement[bool]], *, exact: bool = False
) -> tuple[int, bool]:
    """-> (count, is_estimate); see the module docstring."""
    count_stmt = select(func.count()).select_from(T).where(*conditions)
    if exact:
        return session.scalar(count_stmt) or 0, False
    estimate = estimate_rows(session, conditions)
    if estimate >= COUNT_EXACT_BELOW:
        return estimate, True
    if estimate < COUNT_UNGUARDED_BELOW:  # tiny: not worth the timeout's round trips
        return session.scalar(count_stmt) or 0, False
    try:
        # The estimate can be wrong; a timeout caps what a wrong one costs. The savepoint's
        # rollback also undoes the local setting.
        with session.begin_nested():
            prev = session.scalar(select(func.current_setting("statement_timeout")))
            session.execute(
                select(func.set_config("statement_timeout", str(EXACT_COUNT_TIMEOUT_MS), True))
            )
            count = session.scalar(count_stmt) or 0
            session.execute(select(func.set_config("statement_timeout", prev, True)))
        return count, False
    except DBAPIError as exc:
        if isinstance(exc.orig, pg_errors.QueryCanceled):
            return estimate, True
        raise


# --- list ----------------------------------------------------------------------------------


def _ordering(ordering: str) -> tuple[str, ColumnElement[Any] | None, bool]:
    field = ordering.lstrip("-")
    if field not in ORDERINGS or ordering.count("-") > 1:
        allowed = ", ".join(f"{f}, -{f}" for f in ORDERINGS)
        raise FieldError("ordering", f"Unknown ordering {ordering!r}; allowed: {allowed}.")
    return field, ORDERINGS[field], ordering.startswith("-")


def _ordered(stmt: Select[Any], column: ColumnElement[Any] | None, desc: bool) -> Select[Any]:
    keys = [c for c in (column, T.c.id) if c is not None]
    return stmt.order_by(*(c.desc() if desc else c.asc() for c in keys))


@router.get("/", response_model=NumberPage, summary="List numbers: filters, page or cursor")
def list_numbers(
    request: Request,
    session: SessionDep,
    user: UserDep,
    filters: FiltersDep,
    page: PageDep,
    ordering: Annotated[str, Query(description="id, created_at, last_call_at; - for desc")] = "id",
    pagination: Annotated[Literal["page", "cursor"], Query()] = "page",
    cursor: Annotated[
        str | None, Query(max_length=512, description="next_cursor of the previous page")
    ] = None,
    exact_count: Annotated[bool, Query(description="always count exactly (slower)")] = False,
) -> dict[str, Any]:
    field, column, desc = _ordering(ordering)
    conditions = number_conditions(scoped(session, user, filters))
    stmt = _ordered(select(*COLUMNS).where(*conditions), column, desc)
    size = page.page_size

    if cursor is not None or pagination == "cursor":
        if cursor:
            last_id, value = decode_cursor(cursor, ordering)
            nullable = field == "last_call_at"
            stmt = stmt.where(after(column, T.c.id, desc, last_id, value, nullable=nullable))
        rows = session.execute(stmt.limit(size + 1)).mappings().all()
        more = len(rows) > size
        rows = rows[:size]
        token = None
        if more:
            last = rows[-1]
            token = encode_cursor(ordering, last["id"], last[field] if column is not None else None)
        nxt = (
            str(request.url.remove_query_params("page").include_query_params(cursor=token))
            if token
            else None
        )
        return {
            "count": None,
            "next": nxt,
            "previous": None,
            "next_cursor": token,
            "results": [dict(r) for r in rows],
        }

    rows = session.execute(stmt.limit(size + 1).offset(page.offset)).mappings().all()
    more = len(rows) > size
    rows = rows[:size]
    if not more and (rows or page.offset == 0):
        # The last page is in hand: the count is exact for free (a phone lookup, small sets).
        count, is_estimate = page.offset + len(rows), False
    else:
        count, is_estimate = count_rows(session, conditions, exact=exact_count)
    # next comes from the rows themselves, so it is right even when the count is an estimate.
    _, prev = page_links(request, page, max(count, page.offset + len(rows)))
    nxt = str(request.url.include_query_params(page=page.page + 1)) if more else None
    return {
        "count": count,
        "count_is_estimate": is_estimate,
        "next": nxt,
        "previous": prev,
        "results": [dict(r) for r in rows],
    }


# --- one number ------------------------------------------------------------------------------


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
def get_number(number_id: int, session: SessionDep, user: UserDep) -> PhoneNumber:
    return _number_or_404(session, user, number_id)


@router.patch("/{number_id}/", response_model=NumberOut, summary="Update status, refs, result")
def patch_number(
    number_id: int, body: NumberPatch, session: SessionDep, user: UserDep, client: ClientDep
) -> PhoneNumber:
    if body.force and not user.is_admin:
        raise HTTPException(status_code=403, detail="Only administrators may force a status.")
    number = _number_or_404(session, user, number_id, for_update=True)
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
        else:  # JSON merge patch, top level: null removes a key
            merged = dict(number.result_data or {})
            for key, value in body.result_data.items():
                if value is None:
                    merged.pop(key, None)
                else:
                    merged[key] = value
            data["result_data"] = merged or None
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


@router.delete("/{number_id}/", status_code=204, summary="Delete a number (admins)")
def delete_number(
    number_id: int, session: SessionDep, user: AdminDep, client: ClientDep
) -> Response:
    number = _number_or_404(session, user, number_id, for_update=True)
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


# --- bulk create ---------------------------------------------------------------------------

router.add_api_route(
    "/bulk/",
    bulk_create_endpoint,
    methods=["POST"],
    response_model=BulkCreateOut,
    summary="Create up to 100,000 numbers (JSON) or a CSV upload, via the COPY loader",
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/BulkCreateIn"}},
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


# --- bulk update ---------------------------------------------------------------------------


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


# --- export --------------------------------------------------------------------------------


class CSVResponse(StreamingResponse):
    """Declares the CSV body in OpenAPI (FastAPI would otherwise document JSON)."""

    media_type = "text/csv"


@router.get(
    "/export.csv",
    response_class=CSVResponse,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
    summary="Stream the filtered numbers as CSV (COPY ... TO STDOUT)",
)
def export_csv(
    request: Request, session: SessionDep, user: UserDep, filters: FiltersDep, client: ClientDep
) -> StreamingResponse:
    query, params = copy_query(scoped(session, user, filters))
    audit.record(
        session,
        action="export",
        user=user,
        entity_type="phone_number",
        changes={"filter": filters_as_params(filters), "format": "csv"},
        client=client,
    )
    session.commit()
    session.close()  # the stream uses its own connection; don't hold two
    raw = request.app.state.engine.raw_connection()

    def stream() -> Any:
        ok = False
        try:
            conn = raw.driver_connection
            buffer = bytearray()
            with conn.cursor() as cur, cur.copy(query, params) as copy:
                # COPY hands out one row per read: batch them so each send is ~256 KB.
                for data in copy:
                    buffer += data
                    if len(buffer) >= EXPORT_BUFFER_BYTES:
                        yield bytes(buffer)
                        buffer.clear()
            if buffer:
                yield bytes(buffer)
            conn.rollback()
            ok = True
        finally:
            if ok:
                raw.close()  # back to the pool
            else:
                raw.invalidate()  # client went away mid-COPY: don't reuse the connection

    return StreamingResponse(
        stream(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="phone-numbers.csv"'},
    )


__all__ = ["MAX_PAGE_SIZE", "router"]
