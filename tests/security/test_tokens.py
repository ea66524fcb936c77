"""Hostile tokens: correctly signed ones with claims of the wrong type or size, and unsigned
ones built to break the parser. Every route that reads a token answers 401 (400 for the
logout body), never 500."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import PASSWORD, login

POPUP = "/api/softphone/number/+79161234567/"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _sign(secret: str, header: bytes, payload: bytes) -> str:
    signing_input = f"{_b64(header)}.{_b64(payload)}"
    sig = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(sig)}"


def _claims(user_id: int, token_type: str, **changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "jti": "j" * 32,
        "sub": str(user_id),
        "role": "manager",
        "type": token_type,
        "epoch": 0,
        "fam": "f" * 32,
        "iat": 1_700_000_000,
        "exp": 4_102_444_800,
    }
    for name, value in changes.items():
        if value is _DROP:
            claims.pop(name)
        else:
            claims[name] = value
    return claims


_DROP = object()
DEEP = 5000  # beyond Python's recursion limit for the JSON parser

# (name, claim changes); json.dumps writes NaN/Infinity literally, as an attacker would.
BAD_CLAIMS: list[tuple[str, dict[str, Any]]] = [
    ("exp 1e308", {"exp": 1e308}),
    ("exp -1e308", {"exp": -1e308}),
    ("exp infinity", {"exp": float("inf")}),
    ("exp nan", {"exp": float("nan")}),
    ("exp huge int", {"exp": 10**400}),
    ("exp string", {"exp": "soon"}),
    ("exp list", {"exp": [1]}),
    ("exp bool", {"exp": True}),
    ("iat 1e308", {"iat": 1e308}),
    ("iat infinity", {"iat": float("inf")}),
    ("nbf infinity", {"nbf": float("inf")}),
    ("sub int", {"sub": 1}),
    ("sub list", {"sub": ["1"]}),
    ("sub huge", {"sub": "9" * 40}),
    ("sub 2^63", {"sub": str(2**63)}),
    ("sub negative", {"sub": "-1"}),
    ("sub unicode digits", {"sub": "١"}),
    ("jti dict", {"jti": {"a": 1}}),
    ("jti long", {"jti": "x" * 10_000}),
    ("jti empty", {"jti": ""}),
    ("fam list", {"fam": ["a"]}),
    ("fam missing", {"fam": _DROP}),
    ("epoch string", {"epoch": "0"}),
    ("epoch bool", {"epoch": False}),
    ("epoch float", {"epoch": 0.0}),
    ("epoch huge", {"epoch": 2**70}),
    ("epoch missing", {"epoch": _DROP}),
    ("role list", {"role": ["admin"]}),
    ("type list", {"type": ["access"]}),
]


def _token(settings: Any, user_id: int, token_type: str, changes: dict[str, Any]) -> str:
    header = json.dumps({"alg": "HS256", "typ": "JWT"}).encode()
    payload = json.dumps(_claims(user_id, token_type, **changes)).encode()
    return _sign(settings.jwt_secret, header, payload)


def _unsigned_tokens(settings: Any) -> list[tuple[str, str]]:
    deep = ("[" * DEEP + "]" * DEEP).encode()
    deep_object = b'{"a":' * DEEP + b"1" + b"}" * DEEP
    good_header = json.dumps({"alg": "HS256"}).encode()
    empty = _b64(b"{}")
    return [
        ("deep header", f"{_b64(deep)}.{empty}.x"),
        ("deep header object", f"{_b64(deep_object)}.{empty}.x"),
        ("deep payload, signed", _sign(settings.jwt_secret, good_header, deep)),
        ("deep object payload, signed", _sign(settings.jwt_secret, good_header, deep_object)),
        ("huge number header", _b64(b'{"alg": 1e999}') + f".{empty}.x"),
        ("header not an object", f"{_b64(b'[1]')}.{empty}.x"),
        ("payload not an object", _sign(settings.jwt_secret, good_header, b"[1]")),
        ("not utf-8", _sign(settings.jwt_secret, good_header, b"\xff\xfe")),
        ("megabyte", "a" * 1_000_000),
        ("alg none", _b64(b'{"alg":"none"}') + "." + _b64(b'{"sub":"1"}') + "."),
    ]


def _assert_refused(client: TestClient, token: str, token_type: str) -> None:
    if token_type == "access":
        for resp in (
            client.get("/api/auth/me/", headers={"Authorization": f"Bearer {token}"}),
            client.get("/api/projects/", headers={"Authorization": f"Bearer {token}"}),
            client.get(POPUP, headers={"Authorization": f"Bearer {token}"}),
        ):
            assert resp.status_code == 401, resp.text
            assert resp.headers["WWW-Authenticate"] == "Bearer"
    else:
        resp = client.post("/api/auth/refresh/", json={"refresh": token})
        # The request body caps a refresh token at 4096 characters: a 400 naming the field.
        assert resp.status_code in {400, 401}, resp.text
        if resp.status_code == 400:
            assert "refresh" in resp.json()


@pytest.fixture
def quiet_client(app) -> TestClient:  # type: ignore[no-untyped-def]
    """Server errors come back as 500 answers (what a client would see), not as exceptions."""
    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize(("name", "changes"), BAD_CLAIMS, ids=[n for n, _ in BAD_CLAIMS])
@pytest.mark.parametrize("token_type", ["access", "refresh"])
def test_signed_token_with_malformed_claim_is_refused(
    quiet_client, factory, settings, name, changes, token_type
) -> None:
    user = factory.user(password=PASSWORD)
    _assert_refused(quiet_client, _token(settings, user.id, token_type, changes), token_type)


def test_unparseable_tokens_are_refused(quiet_client, factory, settings) -> None:
    factory.user(password=PASSWORD)
    for name, token in _unsigned_tokens(settings):
        for token_type in ("access", "refresh"):
            try:
                _assert_refused(quiet_client, token, token_type)
            except AssertionError as exc:
                raise AssertionError(f"{name} ({token_type}): {exc}") from None


def test_logout_with_a_malformed_refresh_token_is_400(quiet_client, factory, settings) -> None:
    user = factory.user(password=PASSWORD)
    actor = login(quiet_client, user)
    token = _token(settings, user.id, "refresh", {"exp": 1e308})
    resp = quiet_client.post("/api/auth/logout/", headers=actor.headers, json={"refresh": token})
    assert resp.status_code == 400 and resp.json()["detail"].startswith("refresh:")


def test_a_well_formed_token_still_works(client, factory, settings) -> None:
    """The strict checks refuse nothing the API issues."""
    actor = login(client, factory.user(password=PASSWORD))
    assert client.get("/api/auth/me/", headers=actor.headers).status_code == 200
    assert client.post("/api/auth/refresh/", json={"refresh": actor.refresh}).status_code == 200
