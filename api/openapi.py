"""The OpenAPI document states the real error contract: FastAPI's 422 becomes a 400 with the
`{field: [messages]}` shape (or `{"detail"}`), and 401/403/404/409 are listed where they can
occur. Generic, so routers other engineers add are covered without extra work."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

_REF = "#/components/schemas/"
ERROR_SCHEMAS: dict[str, Any] = {
    "Error": {
        "title": "Error",
        "type": "object",
        "properties": {"detail": {"title": "Detail", "type": "string"}},
        "required": ["detail"],
    },
    "ValidationError": {
        "title": "ValidationError",
        "type": "object",
        "description": 'Field name -> messages, e.g. {"name": ["Field required"]}.',
        "additionalProperties": {"type": "array", "items": {"type": "string"}},
    },
}


def _response(description: str, *schemas: str) -> dict[str, Any]:
    refs = [{"$ref": _REF + name} for name in schemas]
    schema = refs[0] if len(refs) == 1 else {"anyOf": refs}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


BAD_REQUEST = _response("Validation error", "ValidationError", "Error")
STATUS_RESPONSES: dict[str, dict[str, Any]] = {
    "401": _response("Missing, expired, tampered or revoked token", "Error"),
    "403": _response("Not allowed for this role", "Error"),
    "404": _response("Not found (or outside your projects)", "Error"),
    "409": _response("Conflicts with existing data", "Error"),
    "429": _response("Too many attempts; see Retry-After", "Error"),
    "503": _response("Database unavailable", "Error"),
}
# Statuses a route answers that its signature cannot reveal.
EXTRA: dict[tuple[str, str], tuple[str, ...]] = {
    ("post", "/api/auth/login/"): ("401", "429"),
    ("post", "/api/auth/refresh/"): ("401",),
    ("get", "/api/health"): ("503",),
}
WRITE_METHODS = {"post", "put", "patch", "delete"}
# Request bodies a route reads itself (e.g. JSON or a CSV upload on one path), documented by
# hand in its openapi_extra: body_schema() records the model so the document defines it.
_BODY_MODELS: dict[str, type[BaseModel]] = {}


def body_schema(model: type[BaseModel]) -> dict[str, str]:
    """A $ref to `model` for a hand-written requestBody; the schema lands in components."""
    _BODY_MODELS[model.__name__] = model
    return {"$ref": _REF + model.__name__}


def _add_body_models(components: dict[str, Any]) -> None:
    for name, model in _BODY_MODELS.items():
        schema = model.model_json_schema(ref_template=_REF + "{model}")
        for def_name, definition in schema.pop("$defs", {}).items():
            components.setdefault(def_name, definition)
        components.setdefault(name, schema)


def _add(responses: dict[str, Any], *codes: str) -> None:
    for code in codes:
        responses.setdefault(code, STATUS_RESPONSES[code])


def rewrite(schema: dict[str, Any]) -> dict[str, Any]:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    components.update(ERROR_SCHEMAS)
    _add_body_models(components)
    for path, item in schema.get("paths", {}).items():
        for method, op in item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            responses = op.setdefault("responses", {})
            responses.pop("422", None)
            responses.setdefault("400", BAD_REQUEST)
            if op.get("security"):
                # 404 too: a body or query may name a project outside the caller's scope.
                _add(responses, "401", "403", "404")
            if "{" in path:
                _add(responses, "404")
            if method in WRITE_METHODS and op.get("security"):
                _add(responses, "409")
            _add(responses, *EXTRA.get((method, path), ()))
    return schema


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = rewrite(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    description=app.description,
                    routes=app.routes,
                )
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
