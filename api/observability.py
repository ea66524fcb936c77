"""Request ids, one JSON access-log line per request, and Prometheus metrics at /metrics.

A pure ASGI middleware (no BaseHTTPMiddleware) keeps the overhead on the webhook path small.
Under several uvicorn workers, set PROMETHEUS_MULTIPROC_DIR (numbase up does) so /metrics
aggregates every worker.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client import REGISTRY as DEFAULT_REGISTRY
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from models.logging_setup import request_id_var

log = logging.getLogger("numbase.api.access")

HTTP_REQUESTS = Counter(
    "numbase_http_requests_total", "HTTP requests", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "numbase_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
WEBHOOK_EVENTS = Counter(
    "numbase_webhook_events_total", "SoftPhone webhook events by outcome", ["outcome"]
)
WEBHOOK_TRANSACTIONS = Counter(
    "numbase_webhook_transactions_total",
    "Transactions that stored webhook events (requests grouped per transaction: "
    "numbase_webhook_requests_grouped_total / this)",
)
WEBHOOK_REQUESTS_GROUPED = Counter(
    "numbase_webhook_requests_grouped_total", "Webhook requests stored by those transactions"
)
IMPORT_ROWS = Counter(
    "numbase_api_bulk_rows_total", "Rows loaded through the API bulk endpoint", ["outcome"]
)


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")[:64]
        request_id = incoming or uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = _route_template(scope)
            method = scope.get("method", "")
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_LATENCY.labels(method, route).observe(elapsed)
            log.info(
                "request",
                extra={
                    "method": method,
                    "path": scope.get("path"),
                    "route": route,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                    "client": (scope.get("client") or ("", 0))[0],
                },
            )
            request_id_var.reset(token)


def _registry() -> Any:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return DEFAULT_REGISTRY


def install_observability(app: FastAPI) -> None:
    app.add_middleware(RequestContextMiddleware)

    @app.get("/metrics", include_in_schema=False)
    def metrics(_: Request) -> Response:
        return Response(generate_latest(_registry()), media_type=CONTENT_TYPE_LATEST)
