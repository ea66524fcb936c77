"""/api/phone-numbers/: the list (page or cursor) and its CSV export.

The other number routes: api/routers/numbers_crud.py (one number), api/routers/numbers_bulk.py
(bulk create and bulk update). What a request may reach, for all of them: api/number_scope.py;
how `count` stays cheap at 10M rows: api/number_count.py. A page that is not full needs no
count query at all (offset + rows).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import ColumnElement, Select, select

from api import audit
from api.deps import ClientDep, SessionDep, UserDep
from api.errors import FieldError
from api.keyset import after, decode_cursor, encode_cursor
from api.number_count import count_rows
from api.number_scope import FiltersDep, scoped
from api.pagination import PageDep, page_links
from api.schemas.numbers import NumberOut, NumberPage
from api.strict_query import StrictQuery
from models.db import milliseconds
from models.number_filters import MAX_ID, copy_query, filters_as_params, number_conditions
from models.tables import PhoneNumber

# Unknown query parameters are a 400: `?stauts=new` must not export the whole scope.
router = APIRouter(prefix="/api/phone-numbers", tags=["phone numbers"], dependencies=[StrictQuery])

T = PhoneNumber.__table__
COLUMNS = [T.c[name] for name in NumberOut.model_fields]
ORDERINGS: dict[str, ColumnElement[Any] | None] = {
    "id": None,
    "created_at": T.c.created_at,
    "last_call_at": T.c.last_call_at,
}
EXPORT_BUFFER_BYTES = 256 * 1024


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
            if not 0 <= last_id <= MAX_ID:  # anyone can build a cursor (api/keyset.py)
                raise FieldError("cursor", "Invalid cursor.")
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

    def stream() -> Iterator[bytes]:
        ok = False
        try:
            conn = raw.driver_connection
            # One COPY streams the whole export to a client that may read slowly: the bulk
            # statement limit, for this transaction only (models/db.py).
            limit = milliseconds(request.app.state.settings.db_bulk_statement_timeout_seconds)
            conn.execute(f"SET LOCAL statement_timeout = {int(limit)}")
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

    # The first block is read before the response starts: an error COPY raises while planning
    # or on the first rows is an error status, not a 200 whose file stops short.
    chunks = stream()
    first = next(chunks, b"")
    return StreamingResponse(
        itertools.chain((first,), chunks),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="phone-numbers.csv"'},
    )
