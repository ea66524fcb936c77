"""DRF-style pages `{"count","next","previous","results"}` and `?ordering=` for list endpoints."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query, Request
from pydantic import BaseModel
from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import Session

from api.errors import FieldError

T = TypeVar("T")
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


class Page(BaseModel, Generic[T]):
    count: int
    next: str | None
    previous: str | None
    results: list[T]


class PageParams:
    def __init__(
        self,
        page: Annotated[int, Query(ge=1, le=10_000_000, description="1-based page number")] = 1,
        page_size: Annotated[
            int, Query(ge=1, le=MAX_PAGE_SIZE, description="rows per page (max 1000)")
        ] = DEFAULT_PAGE_SIZE,
    ) -> None:
        self.page = page
        self.page_size = page_size

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.page_size


PageDep = Annotated[PageParams, Depends()]


def page_links(request: Request, params: PageParams, count: int) -> tuple[str | None, str | None]:
    """Absolute next/previous URLs that keep every other query parameter."""
    nxt = prev = None
    if params.offset + params.page_size < count:
        nxt = str(request.url.include_query_params(page=params.page + 1))
    if params.page > 1:
        last = max(1, -(-count // params.page_size))
        prev = str(request.url.include_query_params(page=min(params.page - 1, last)))
    return nxt, prev


def apply_ordering(
    stmt: Select[Any],
    ordering: str | None,
    allowed: Mapping[str, ColumnElement[Any]],
    default: Sequence[str] = ("id",),
    tiebreak: ColumnElement[Any] | None = None,
) -> Select[Any]:
    """`?ordering=name,-created_at`: whitelisted fields only, always a stable tie-break."""
    fields = [f.strip() for f in ordering.split(",") if f.strip()] if ordering else list(default)
    clauses = []
    for field in fields:
        column = allowed.get(field.lstrip("-"))
        if column is None:
            raise FieldError(
                "ordering", f"Unknown field {field.lstrip('-')!r}; allowed: {', '.join(allowed)}."
            )
        clauses.append(column.desc() if field.startswith("-") else column.asc())
    if tiebreak is not None:
        clauses.append(tiebreak.asc())
    return stmt.order_by(*clauses)


def paginate(
    session: Session,
    stmt: Select[Any],
    params: PageParams,
    request: Request,
    serialize: Callable[[Any], Any],
    *,
    scalars: bool = True,
) -> dict[str, Any]:
    """Run a filtered, ordered SELECT as one page with an exact count."""
    count = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    page_stmt = stmt.limit(params.page_size).offset(params.offset)
    rows = session.scalars(page_stmt).all() if scalars else session.execute(page_stmt).all()
    nxt, prev = page_links(request, params, count)
    return {"count": count, "next": nxt, "previous": prev, "results": [serialize(r) for r in rows]}
