"""Liveness: the process answers and the database does."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

router = APIRouter(tags=["health"])


@router.get("/api/health", summary="Liveness and database check")
def health(request: Request) -> JSONResponse:
    try:
        with request.app.state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error means "not healthy"
        return JSONResponse({"status": "error", "database": str(exc)[:200]}, status_code=503)
    return JSONResponse({"status": "ok", "database": "ok"})


@router.get("/api/ready", summary="Readiness: database reachable and migrations at head")
def ready(request: Request) -> JSONResponse:
    from models.migrate import head_revision

    try:
        with request.app.state.engine.connect() as conn:
            current = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except Exception as exc:  # unreachable database or no schema yet
        return JSONResponse({"status": "error", "database": str(exc)[:200]}, status_code=503)
    head = head_revision()
    if current != head:
        return JSONResponse(
            {"status": "error", "migrations": {"current": current, "head": head}}, status_code=503
        )
    return JSONResponse({"status": "ok", "database": "ok", "migrations": {"current": current}})
