"""The route map as the OpenAPI document describes it: nothing but login, refresh, health and
the docs answers without credentials, and bad tokens are refused everywhere. Generic: routes
other engineers add are walked too (path parameters filled with 1)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import jwt
from fastapi.testclient import TestClient

PUBLIC = {
    ("POST", "/api/auth/login/"),
    ("POST", "/api/auth/refresh/"),
    ("GET", "/api/health"),
    ("GET", "/api/ready"),
}
METHODS = ("get", "post", "put", "patch", "delete")


def _operations(client: TestClient) -> list[tuple[str, str, dict[str, Any]]]:
    schema = client.get("/api/openapi.json").json()
    return [
        (method.upper(), path, op)
        for path, item in schema["paths"].items()
        for method, op in item.items()
        if method in METHODS
    ]


def _fill(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def _send(client: TestClient, method: str, path: str, headers: dict[str, str]) -> int:
    body = {} if method in {"POST", "PUT", "PATCH"} else None
    return client.request(method, _fill(path), json=body, headers=headers).status_code


def test_docs_are_public(client: TestClient) -> None:
    assert client.get("/api/docs").status_code == 200
    schema = client.get("/api/openapi.json")
    assert schema.status_code == 200 and schema.json()["openapi"].startswith("3.")


def test_no_route_is_reachable_anonymously(client: TestClient) -> None:
    operations = _operations(client)
    assert len(operations) >= 40  # the walk really covers the API
    for method, path, _ in operations:
        if (method, path) in PUBLIC:
            continue
        status = _send(client, method, path, {})
        assert status == 401, (method, path, status)


def test_bad_tokens_are_refused_on_every_protected_route(client, admin, settings) -> None:
    now = dt.datetime.now(dt.UTC)
    expired = jwt.encode(
        {
            "jti": "x" * 32,
            "sub": str(admin.user.id),
            "role": "admin",
            "type": "access",
            "iat": int((now - dt.timedelta(hours=2)).timestamp()),
            "exp": int((now - dt.timedelta(hours=1)).timestamp()),
        },
        settings.jwt_secret,
        algorithm="HS256",
    )
    head, payload, _ = admin.access.split(".")
    forged = jwt.encode(
        {**jwt.decode(admin.access, options={"verify_signature": False}), "role": "admin"},
        "not-the-secret-" + "y" * 40,
        algorithm="HS256",
    )
    bad = {
        "expired": expired,
        "tampered": f"{head}.{payload}.{'A' * 43}",
        "forged": forged,
        "refresh-as-access": admin.refresh,
        "garbage": "not-a-jwt",
    }
    protected = [
        (m, p) for m, p, op in _operations(client) if op.get("security") and (m, p) not in PUBLIC
    ]
    for name, token in bad.items():
        for method, path in protected:
            status = _send(client, method, path, {"Authorization": f"Bearer {token}"})
            assert status == 401, (name, method, path, status)
    # Revoked: after logout the (otherwise valid) access token fails everywhere.
    assert client.post("/api/auth/logout/", headers=admin.headers).status_code == 204
    for method, path in protected:
        assert _send(client, method, path, admin.headers) == 401, (method, path)


def test_schema_states_the_error_contract(client: TestClient) -> None:
    schema = client.get("/api/openapi.json").json()
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    validation = schema["components"]["schemas"]["ValidationError"]
    assert validation["additionalProperties"]["items"] == {"type": "string"}
    for method, path, op in _operations(client):
        codes = set(op["responses"])
        assert "422" not in codes and "400" in codes, (method, path)
        if op.get("security"):
            assert {"401", "403"} <= codes, (method, path)
        if "{" in path:
            assert "404" in codes, (method, path)
