"""Unknown query parameters are a 400, not silently ignored: `?stauts=paused` must not quietly
return every project. Add `dependencies=[StrictQuery]` to a router to opt in."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Request

from api.errors import FieldError

_allowed: dict[int, frozenset[str]] = {}


def _query_names(dependant: Any) -> set[str]:
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def _declared(route: Any) -> frozenset[str]:
    key = id(route)
    if key not in _allowed:
        _allowed[key] = frozenset(_query_names(route.dependant))
    return _allowed[key]


async def reject_unknown_query(request: Request) -> None:  # async: no threadpool hop
    route = request.scope.get("route")
    if route is None or not request.query_params:
        return
    allowed = _declared(route)
    unknown = sorted({k for k in request.query_params if k not in allowed})
    if unknown:
        hint = f"Unknown query parameter; allowed: {', '.join(sorted(allowed)) or 'none'}."
        raise FieldError({name or "non_field_errors": [hint] for name in unknown})


StrictQuery = Depends(reject_unknown_query)
