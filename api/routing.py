"""Route matching the way clients expect it, for every router (built from the app's routes on
the first request, so routers added later are covered without extra work).

* A literal path beats a parameter: `PATCH /api/phone-numbers/bulk-update/` is that path's
  405, not `PATCH /api/phone-numbers/{number_id}/` with a number id of "bulk-update" (a 400).
  The router takes the first route whose path *and* method match, so a parameter route of
  another router used to win over a literal path that lacks the method. LiteralPathsFirst
  answers those 405s before routing.
* A 405 carries `Allow` with every method the path really has: the router lists only the
  methods of the first route that matched the path, and FastAPI has one route per method.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

_METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


@dataclass
class PathMethods:
    """Every route's methods: literal paths by path, paths with parameters by regex."""

    literal: dict[str, frozenset[str]] = field(default_factory=dict)
    templates: list[tuple[re.Pattern[str], frozenset[str]]] = field(default_factory=list)

    @classmethod
    def of(cls, app: FastAPI) -> PathMethods:
        out = cls()
        for route in iter_route_contexts(app.routes):
            methods = frozenset(route.methods or ())
            path = route.path
            if not methods or path is None:
                continue  # websockets, mounts
            if not route.param_convertors:
                out.literal[path] = out.literal.get(path, frozenset()) | methods
            else:
                out.templates.append((route.path_regex, methods))
        return out

    def allowed(self, path: str) -> frozenset[str]:
        if path in self.literal:
            return self.literal[path]
        return frozenset().union(*(m for rx, m in self.templates if rx.match(path)))


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _allow(methods: frozenset[str]) -> str:
    return ", ".join(sorted(methods, key=lambda m: (*_METHOD_ORDER, m).index(m)))


def _not_allowed(methods: frozenset[str], detail: Any = "Method Not Allowed") -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=405, headers={"Allow": _allow(methods)})


def _paths(app: FastAPI) -> PathMethods:
    paths: PathMethods | None = getattr(app.state, "path_methods", None)
    if paths is None:  # built on the first request: every router is included by then
        paths = app.state.path_methods = PathMethods.of(app)
    return paths


class LiteralPathsFirst:
    """A request for a literal path with a method that path lacks is its 405, before routing
    can hand it to a parameter route (OPTIONS is left to CORS and the router)."""

    def __init__(self, app: ASGIApp, api: FastAPI) -> None:
        self.app = app
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] != "OPTIONS":
            methods = _paths(self.api).literal.get(_route_path(scope))
            if methods and scope["method"] not in methods:
                await _not_allowed(methods)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def install_routing(app: FastAPI) -> None:
    app.add_middleware(LiteralPathsFirst, api=app)

    async def method_not_allowed(request: Request, exc: Exception) -> JSONResponse:
        detail = exc.detail if isinstance(exc, StarletteHTTPException) else "Method Not Allowed"
        return _not_allowed(_paths(app).allowed(_route_path(request.scope)), detail)

    app.add_exception_handler(405, method_not_allowed)
