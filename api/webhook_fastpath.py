"""The SoftPhone webhook straight to its handler, past FastAPI's router and dependency solving.

Softphones post one event per request, a thousand a second at peak, and on this path FastAPI's
routing, dependency resolution and exception-middleware layers cost about a third of the API's
CPU per request (py-spy, docs/benchmarks.md). This middleware answers ``POST
/api/softphone/webhook/`` with the very functions the declared route uses (signature check
``verified_body``, then ``process_webhook``), inside the request-id / access-log / metrics
middleware; an exception goes to the app's own exception handlers, so every answer, error
contract included, is the one the route would give. The route stays declared: it documents the
endpoint in the OpenAPI schema.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from api.routers.softphone import WEBHOOK_PATH, process_webhook, router
from api.webhook_auth import verified_body


class WebhookFastPath:
    def __init__(self, app: ASGIApp, api: FastAPI) -> None:
        self.app = app
        self.api = api
        self.route: BaseRoute = next(r for r in router.routes if r.path == WEBHOOK_PATH)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != WEBHOOK_PATH:
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route  # the metrics label the route would have given
        request = Request(scope, receive)
        state = self.api.state
        try:
            body = await verified_body(request, state.settings)
            response = await process_webhook(body, state.settings, state.event_batcher)
        except Exception as exc:
            handler = self._handler(exc)
            if handler is None:
                raise
            response = await handler(request, exc)
        await response(scope, receive, send)

    def _handler(self, exc: Exception) -> Any:
        for cls in type(exc).__mro__:
            if cls in self.api.exception_handlers:
                return self.api.exception_handlers[cls]
        return None
