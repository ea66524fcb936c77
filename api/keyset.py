"""Keyset (cursor) pagination: opaque tokens and the "rows after this key" condition.

A cursor is URL-safe base64 (no padding) of compact JSON `{"o": ordering, "i": last id,
"v": last sort value}` ("v" is absent when ordering by id). The page after it is
`WHERE (sort, id) > (v, i) ORDER BY sort, id LIMIT n` (mirrored for descending orderings), so:

* any depth costs the same as the first page when an index matches (no OFFSET);
* rows inserted meanwhile never shift the window: each existing row is returned exactly once,
  and a new row appears only if its key sorts after the reader's position;
* anyone can build the cursor of any position: it is only the key of the row before it
  (benchmarks/bench_api.py jumps to page 20,000 that way).

NULL sort values (`last_call_at`) follow PostgreSQL's default: NULLs sort last ascending and
first descending, and the condition below keeps that order consistent.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, tuple_

from api.errors import FieldError


def encode_cursor(ordering: str, last_id: int, value: Any = None) -> str:
    payload: dict[str, Any] = {"o": ordering, "i": int(last_id)}
    if ordering.lstrip("-") != "id":
        payload["v"] = value.isoformat() if isinstance(value, dt.datetime) else value
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(token: str, ordering: str) -> tuple[int, dt.datetime | None]:
    """-> (last id, last sort value) or a 400 on `cursor`."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = json.loads(raw)
        last_id = payload["i"]
        value = payload.get("v")
        if not isinstance(last_id, int) or isinstance(last_id, bool):
            raise ValueError("id")
        if value is not None:
            value = dt.datetime.fromisoformat(value)
        cursor_ordering = payload["o"]
    except (binascii.Error, ValueError, KeyError, TypeError, AttributeError):
        raise FieldError("cursor", "Invalid cursor.") from None
    if cursor_ordering != ordering:
        raise FieldError(
            "cursor", f"This cursor belongs to ordering={cursor_ordering}; keep the same ordering."
        )
    return last_id, value


def after(
    column: ColumnElement[Any] | None,
    id_column: ColumnElement[int],
    descending: bool,
    last_id: int,
    value: Any,
    *,
    nullable: bool = False,
) -> ColumnElement[bool]:
    """Rows strictly after (value, last_id) in `ORDER BY column, id` (both DESC if descending)."""
    if column is None:
        return id_column < last_id if descending else id_column > last_id
    if not nullable or value is not None:
        key, bound = tuple_(column, id_column), tuple_(value, last_id)
        strictly = key < bound if descending else key > bound
        if not nullable:
            return strictly
        # NULLs are the largest values: after a non-null key ascending they still follow;
        # descending they came first and are behind us.
        return or_(strictly, column.is_(None)) if not descending else strictly
    # The last row had a NULL sort value.
    if descending:  # NULLs first: the rest of the NULLs by id desc, then every non-null row
        return or_(and_(column.is_(None), id_column < last_id), column.is_not(None))
    return and_(column.is_(None), id_column > last_id)  # NULLs last
