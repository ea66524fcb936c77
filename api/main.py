"""The FastAPI application factory (`uvicorn api.main:create_app --factory`)."""

from __future__ import annotations

from fastapi import FastAPI

from api.routers import health


def create_app() -> FastAPI:
    app = FastAPI(
        title="numbase API",
        version="0.1.0",
        docs_url="/api/docs",
        openapi_url="/api/openapi.json",
        redoc_url=None,
    )
    app.include_router(health.router)
    return app
