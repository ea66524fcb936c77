"""The FastAPI application factory (`uvicorn api.main:create_app --factory`)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from sqlalchemy import Engine

from api.docs_ui import install_docs_ui
from api.errors import install_error_handlers
from api.event_batcher import EventBatcher
from api.json_reads import install_json_reads
from api.observability import install_observability
from api.openapi import install_openapi
from api.routers import (
    audit_log,
    auth,
    callable_numbers,
    conversion,
    dial_queue,
    dialing_rules,
    dnc,
    geo,
    health,
    holidays,
    imports,
    lead_quality,
    links,
    numbers,
    numbers_bulk,
    numbers_crud,
    projects,
    providers,
    schedules,
    sftp,
    softphone,
    users,
)
from api.routing import install_routing
from api.webhook_fastpath import WebhookFastPath
from models.db import db_timeouts, make_engine, resolve_database_url
from models.logging_setup import configure_logging
from models.settings import Settings, get_settings


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    if engine is None:
        engine = make_engine(
            resolve_database_url(settings),
            pool_size=settings.db_pool_size,
            timeouts=db_timeouts(settings),
            prepares=not settings.db_pooled,
        )
    app = FastAPI(
        title="numbase API",
        version="0.1.0",
        description="Projects, providers, geo, phone numbers, SFTP jobs, conversion and SoftPhone.",
        docs_url=None,  # api/docs_ui.py serves /api/docs without a CDN
        openapi_url="/api/openapi.json",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine
    install_json_reads(engine)  # reads of stored JSON never fail
    app.state.event_batcher = EventBatcher(
        engine,
        group_lock_timeout=settings.db_webhook_lock_timeout_seconds,
        lock_timeout=settings.db_lock_timeout_seconds,
    )
    # Literal paths before parameters, and a true Allow header on 405s (api/routing.py).
    install_routing(app)
    # Innermost of the user middleware: inside the request-id/access-log/metrics one.
    app.add_middleware(WebhookFastPath, api=app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=True,
            allow_methods=["*"],
            allow_headers=["*"],
        )
    install_error_handlers(app)
    install_observability(app)
    # Routes are matched in order: the pop-up, the hottest routed path, goes first (the
    # webhook is answered before routing, by WebhookFastPath).
    app.include_router(softphone.router)
    for module in (health, auth, users, projects, providers, geo, links, schedules, audit_log):
        app.include_router(module.router)
    # Literal paths (bulk/, bulk-update/, export.csv) before /{number_id}/.
    for module in (numbers, numbers_bulk, numbers_crud):
        app.include_router(module.router)
    app.include_router(sftp.router)
    app.include_router(conversion.router)
    app.include_router(callable_numbers.router)
    app.include_router(holidays.router)
    app.include_router(dnc.router)
    app.include_router(imports.router)
    app.include_router(lead_quality.router)
    app.include_router(dial_queue.router)
    app.include_router(dialing_rules.router)
    install_openapi(app)
    install_docs_ui(app)
    return app
