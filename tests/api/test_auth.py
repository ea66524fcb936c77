"""Auth flow through HTTP: login, refresh rotation, logout revocation, throttling, bad tokens."""

from __future__ import annotations

import datetime as dt

import jwt
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from api.main import create_app
from models.tables import AuditLog
from tests.api.conftest import PASSWORD, login


def test_login_returns_tokens_with_claims(client: TestClient, factory, settings) -> None:
    user = factory.user(role="admin", password=PASSWORD)
    resp = client.post("/api/auth/login/", json={"username": user.username, "password": PASSWORD})
    assert resp.status_code == 200
    body = resp.json()
    for kind, ttl in (("access", 900), ("refresh", 7 * 24 * 3600)):
        claims = jwt.decode(body[kind], settings.jwt_secret, algorithms=["HS256"])
        assert (
            claims["sub"] == str(user.id) and claims["role"] == "admin" and claims["type"] == kind
        )
        assert claims["jti"] and abs(claims["exp"] - claims["iat"] - ttl) <= 1
    me = client.get("/api/auth/me/", headers={"Authorization": f"Bearer {body['access']}"})
    assert me.status_code == 200 and me.json()["username"] == user.username
    assert "password_hash" not in me.json()


def test_wrong_password_and_unknown_user_are_401_and_audited(client, factory, session) -> None:
    user = factory.user()
    for name, pw in ((user.username, "nope-nope"), ("ghost", "whatever")):
        resp = client.post("/api/auth/login/", json={"username": name, "password": pw})
        assert resp.status_code == 401
        assert resp.json() == {"detail": "Invalid username or password."}
    actions = session.scalars(select(AuditLog.action).order_by(AuditLog.id)).all()
    assert actions == ["login_failed", "login_failed"]
    rows = session.scalars(select(AuditLog).order_by(AuditLog.id)).all()
    assert all("password" not in str(r.changes) for r in rows)


def test_login_validation_errors_are_400_with_field(client) -> None:
    resp = client.post("/api/auth/login/", json={"username": ""})
    assert resp.status_code == 400
    assert set(resp.json()) == {"username", "password"}
    resp = client.post(
        "/api/auth/login/", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert resp.status_code == 400


def test_inactive_user_cannot_login_or_use_live_token(client, factory, session) -> None:
    user = factory.user(password=PASSWORD)
    actor = login(client, user)
    session.execute(text("UPDATE users SET is_active = false WHERE id = :id"), {"id": user.id})
    session.commit()
    assert client.get("/api/auth/me/", headers=actor.headers).status_code == 401
    resp = client.post("/api/auth/login/", json={"username": user.username, "password": PASSWORD})
    assert resp.status_code == 401
    assert client.post("/api/auth/refresh/", json={"refresh": actor.refresh}).status_code == 401


def test_refresh_rotates_and_reuse_is_refused(client, factory) -> None:
    actor = login(client, factory.user(password=PASSWORD))
    first = client.post("/api/auth/refresh/", json={"refresh": actor.refresh})
    assert first.status_code == 200
    new = first.json()
    assert (
        client.get(
            "/api/auth/me/", headers={"Authorization": f"Bearer {new['access']}"}
        ).status_code
        == 200
    )
    reuse = client.post("/api/auth/refresh/", json={"refresh": actor.refresh})
    assert reuse.status_code == 401
    assert "already been used" in reuse.json()["detail"]
    # An access token is not a refresh token and vice versa.
    assert client.post("/api/auth/refresh/", json={"refresh": new["access"]}).status_code == 401
    bad = client.get("/api/auth/me/", headers={"Authorization": f"Bearer {new['refresh']}"})
    assert bad.status_code == 401


def test_logout_revokes_both_tokens_across_restart(client, factory, settings, db) -> None:
    actor = login(client, factory.user(password=PASSWORD))
    resp = client.post("/api/auth/logout/", headers=actor.headers, json={"refresh": actor.refresh})
    assert resp.status_code == 204
    # A brand-new app instance (a restart, or another replica) still refuses both.
    with TestClient(create_app(settings=settings, engine=db)) as restarted:
        me = restarted.get("/api/auth/me/", headers=actor.headers)
        assert me.status_code == 401 and me.json()["detail"] == "Token has been revoked."
        assert (
            restarted.post("/api/auth/refresh/", json={"refresh": actor.refresh}).status_code == 401
        )


def test_missing_expired_tampered_tokens_are_401(client, factory, settings) -> None:
    user = factory.user(password=PASSWORD)
    actor = login(client, user)
    assert client.get("/api/auth/me/").status_code == 401
    assert client.get("/api/auth/me/", headers={"Authorization": "Basic abc"}).status_code == 401
    head, payload, sig = actor.access.split(".")
    tampered = f"{head}.{payload}.{sig[:-2]}{'AA' if sig[-2:] != 'AA' else 'BB'}"
    assert (
        client.get("/api/auth/me/", headers={"Authorization": f"Bearer {tampered}"}).status_code
        == 401
    )
    expired = jwt.encode(
        {
            "jti": "x",
            "sub": str(user.id),
            "role": "manager",
            "type": "access",
            "epoch": 0,
            "fam": "f",
            "exp": dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5),
        },
        settings.jwt_secret,
        algorithm="HS256",
    )
    resp = client.get("/api/auth/me/", headers={"Authorization": f"Bearer {expired}"})
    assert resp.status_code == 401 and resp.json()["detail"] == "Token has expired."
    forged = jwt.encode(
        {"jti": "y", "sub": str(user.id), "role": "admin", "type": "access", "exp": 4102444800},
        "some-other-secret-of-sufficient-length",
        algorithm="HS256",
    )
    assert (
        client.get("/api/auth/me/", headers={"Authorization": f"Bearer {forged}"}).status_code
        == 401
    )


def test_repeated_failures_are_throttled_with_retry_after(client, factory, settings) -> None:
    user = factory.user(password=PASSWORD)
    for _ in range(settings.login_max_failures):
        resp = client.post("/api/auth/login/", json={"username": user.username, "password": "bad"})
        assert resp.status_code == 401
    blocked = client.post(
        "/api/auth/login/", json={"username": user.username, "password": PASSWORD}
    )
    assert blocked.status_code == 429
    assert 1 <= int(blocked.headers["Retry-After"]) <= settings.login_window_seconds
