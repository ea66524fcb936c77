"""The plan's error contract: `{"detail": "..."}`, or HTTP 400 `{"field": ["message", ...]}` for
validation (FastAPI's 422 shape is replaced everywhere), 409 for unique clashes, never a 500 for
bad input. A request that waited longer than the lock timeout, or ran past the statement
timeout (models/db.py), answers 503 with `Retry-After` and a detail naming the wait: its
transaction was rolled back, so a retry is safe."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg import errors as pg_errors
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from models.bulk import BulkLoadTimeout
from models.db import timeout_reason

log = logging.getLogger("numbase.api")

# Where a request value came from is not part of the field name the client sees.
_LOCATIONS = {"body", "query", "path", "header", "cookie"}
NON_FIELD = "non_field_errors"
# FastAPI's detail when reading the body raised anything but a JSONDecodeError: JSON nested
# too deeply for Python's parser (RecursionError), an integer too long for Python, a broken
# form. Answered in the contract's shape, like any other unreadable body.
_BODY_PARSE_ERROR = "There was an error parsing the body"


class FieldError(Exception):
    """A validation error on named fields -> 400 {field: [messages]}."""

    def __init__(self, errors: dict[str, list[str]] | str, message: str | None = None) -> None:
        if isinstance(errors, str):
            errors = {errors: [message or "invalid value"]}
        self.errors = errors
        super().__init__(str(errors))


def not_found(what: str = "Not found.") -> HTTPException:
    return HTTPException(status_code=404, detail=what)


def conflict(detail: str) -> HTTPException:
    return HTTPException(status_code=409, detail=detail)


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in _LOCATIONS:
        parts = parts[1:]
    return ".".join(parts) or NON_FIELD


def _malformed(err: Mapping[str, Any]) -> str:
    # The body is not JSON at all: no field to name (FastAPI's loc is a character offset).
    reason = str((err.get("ctx") or {}).get("error") or "").rstrip(".")
    loc = tuple(err.get("loc", ()))
    if reason and len(loc) == 2 and isinstance(loc[1], int):
        reason += f" at character {loc[1]}"
    return f"Malformed JSON body: {reason}." if reason else "Malformed JSON body."


def field_errors(errors: Iterable[Mapping[str, Any]]) -> dict[str, list[str]]:
    """pydantic's error list -> the contract's {field: [messages]} (one rule for the request
    validation handler and the routes that validate a body themselves)."""
    out: dict[str, list[str]] = {}
    for err in errors:
        if err.get("type") == "json_invalid":
            name, message = NON_FIELD, _malformed(err)
        else:
            name = _field_name(tuple(err.get("loc", ())))
            ctx = err.get("ctx") or {}
            # A validator's own message, without pydantic's "Value error, " prefix.
            reason = ctx.get("error") if err.get("type") == "value_error" else None
            message = str(reason or err.get("msg", "invalid value"))
        out.setdefault(name, []).append(message)
    return out


def validation_errors(exc: RequestValidationError) -> dict[str, list[str]]:
    return field_errors(exc.errors())


def unparsable_body(cause: BaseException | None) -> dict[str, list[str]]:
    if isinstance(cause, RecursionError):
        return {NON_FIELD: ["Malformed JSON body: nested too deeply to parse."]}
    if isinstance(cause, ValueError):
        return {NON_FIELD: [f"Malformed JSON body: {cause}."]}
    return {NON_FIELD: ["The request body could not be parsed."]}


def _constraint_message(exc: IntegrityError) -> tuple[int, str]:
    orig = exc.orig
    diag = getattr(orig, "diag", None)
    constraint = getattr(diag, "constraint_name", None) or "constraint"
    if isinstance(orig, pg_errors.UniqueViolation):
        detail = getattr(diag, "message_detail", None) or ""
        return 409, f"Already exists ({constraint}). {detail}".strip()
    if isinstance(orig, pg_errors.ForeignKeyViolation):
        return 409, f"Refers to a missing row or is still referenced ({constraint})."
    if isinstance(orig, pg_errors.CheckViolation | pg_errors.NotNullViolation):
        return 400, f"Value refused by the database ({constraint})."
    return 409, f"Conflicts with stored data ({constraint})."


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(validation_errors(exc), status_code=400)

    @app.exception_handler(FieldError)
    async def _fields(_: Request, exc: FieldError) -> JSONResponse:
        return JSONResponse(exc.errors, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == _BODY_PARSE_ERROR:
            return JSONResponse(unparsable_body(exc.__cause__), status_code=400)
        return JSONResponse(
            {"detail": exc.detail},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(IntegrityError)
    async def _integrity(_: Request, exc: IntegrityError) -> JSONResponse:
        status, detail = _constraint_message(exc)
        return JSONResponse({"detail": detail}, status_code=status)

    @app.exception_handler(PoolTimeout)
    async def _pool_exhausted(_: Request, exc: PoolTimeout) -> JSONResponse:
        # Every pooled connection stayed busy for the pool timeout: a burst, not a fault.
        log.warning("database connection pool exhausted: %s", exc)
        return JSONResponse(
            {"detail": "Database busy; try again shortly."},
            status_code=503,
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(DBAPIError)
    async def _dbapi(request: Request, exc: DBAPIError) -> JSONResponse:
        # Data errors (a value PostgreSQL cannot take) are the client's; the rest are ours.
        if isinstance(exc.orig, pg_errors.DataError):
            return JSONResponse({"detail": "Invalid value for the database."}, status_code=400)
        reason = timeout_reason(exc)
        if reason is not None:
            return _timed_out(request, reason)
        log.exception("database error")
        return JSONResponse(
            {"detail": "Database unavailable."}, status_code=503, headers={"Retry-After": "5"}
        )

    @app.exception_handler(BulkLoadTimeout)
    async def _bulk_timeout(request: Request, exc: BulkLoadTimeout) -> JSONResponse:
        return _timed_out(request, str(exc))


def _timed_out(request: Request, reason: str) -> JSONResponse:
    """503: the wait is the server's problem, not the request's; the same request may succeed
    once the lock is released. Logged as a warning (no traceback: it is not a bug)."""
    log.warning("%s %s: %s", request.method, request.url.path, reason)
    settings = getattr(request.app.state, "settings", None)
    wait = getattr(settings, "db_lock_timeout_seconds", 0) or 1
    return JSONResponse(
        {"detail": reason[0].upper() + reason[1:] + "."},
        status_code=503,
        headers={"Retry-After": str(max(1, math.ceil(wait)))},
    )
