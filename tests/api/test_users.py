"""Users (admin only) through HTTP: CRUD, filters, password change, self-protection, audit."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select

from models.tables import User
from tests.api.conftest import PASSWORD, login
from tests.api.util import audit_rows, only_audit, table_state

URL = "/api/users/"
NEW = {"username": "olga", "email": "olga@example.com", "password": "long-enough-1"}


def test_admin_creates_user_who_can_log_in(client: TestClient, admin, db, session) -> None:
    resp = client.post(URL, json=NEW, headers=admin.headers)
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["role"] == "manager" and body["is_active"] is True
    assert "password" not in body and "password_hash" not in body
    stored = session.scalar(select(User).where(User.username == "olga"))
    assert stored.password_hash.startswith("$argon2id$")
    assert client.get(f"{URL}{body['id']}/", headers=admin.headers).json() == body
    row = only_audit(db)
    assert (row.action, row.entity_type, row.entity_id) == ("create", "user", body["id"])
    assert "password" not in str(row.changes) and "argon2" not in str(row.changes)
    assert row.changes["username"] == [None, "olga"]
    ok = client.post("/api/auth/login/", json={"username": "olga", "password": NEW["password"]})
    assert ok.status_code == 200


def test_create_validation_and_conflicts(client, admin, db) -> None:
    for patch, field in (
        ({"password": "short"}, "password"),
        ({"email": "not-an-email"}, "email"),
        ({"username": "has space"}, "username"),
        ({"username": ""}, "username"),
        ({"role": "root"}, "role"),
        ({"is_staff": True}, "is_staff"),
    ):
        resp = client.post(URL, json={**NEW, **patch}, headers=admin.headers)
        assert resp.status_code == 400 and field in resp.json(), (patch, resp.text)
    resp = client.post(URL, json={"username": "x"}, headers=admin.headers)
    assert resp.status_code == 400 and {"email", "password"} <= set(resp.json())
    assert client.post(URL, json=NEW, headers=admin.headers).status_code == 201
    before = table_state(db, "users")
    n_audit = len(audit_rows(db))
    for clash in ({"email": "other@example.com"}, {"username": "other"}):
        resp = client.post(URL, json={**NEW, **clash}, headers=admin.headers)
        assert resp.status_code == 409, resp.text
    assert table_state(db, "users") == before and len(audit_rows(db)) == n_audit


def test_list_filters_and_ordering(client, admin, factory) -> None:
    factory.user(username="zed", email="zed@corp.io", role="manager")
    factory.user(username="amy", email="amy@corp.io", role="manager", is_active=False)
    h = admin.headers

    def names(**params) -> list[str]:
        resp = client.get(URL, params=params, headers=h)
        assert resp.status_code == 200, resp.text
        return [u["username"] for u in resp.json()["results"]]

    assert names(role="manager", ordering="username") == ["amy", "zed"]
    assert names(is_active=False) == ["amy"]
    assert names(search="CORP.IO", ordering="-username") == ["zed", "amy"]
    assert names(role="admin") == [admin.user.username]
    for params, field in (({"role": "x"}, "role"), ({"ordering": "password_hash"}, "ordering")):
        resp = client.get(URL, params=params, headers=h)
        assert resp.status_code == 400 and field in resp.json()


def test_update_role_email_password_audited_without_secrets(client, admin, factory, db) -> None:
    user = factory.user(password=PASSWORD)
    url = f"{URL}{user.id}/"
    resp = client.patch(
        url, json={"role": "admin", "password": "brand-new-pass"}, headers=admin.headers
    )
    assert resp.status_code == 200 and resp.json()["role"] == "admin"
    row = only_audit(db)
    assert row.action == "update"
    assert row.changes == {"role": ["manager", "admin"], "password": ["***", "***"]}
    # The new password works, the old one does not.
    login(client, user, "brand-new-pass")
    resp = client.post("/api/auth/login/", json={"username": user.username, "password": PASSWORD})
    assert resp.status_code == 401
    resp = client.put(
        url,
        json={"email": "new@example.com", "role": "manager", "is_active": True},
        headers=admin.headers,
    )
    assert resp.status_code == 200 and resp.json()["email"] == "new@example.com"
    rows = audit_rows(db, entity_id=user.id, action="update")
    assert rows[-1].changes == {
        "email": [user.email, "new@example.com"],
        "role": ["admin", "manager"],
    }
    for body, field in (
        ({"password": "short"}, "password"),
        ({"role": None}, "role"),
        ({"username": "rename"}, "username"),
        ({"email": "x"}, "email"),
    ):
        resp = client.patch(url, json=body, headers=admin.headers)
        assert resp.status_code == 400 and field in resp.json(), (body, resp.text)
    resp = client.put(url, json={"email": "a@b.co"}, headers=admin.headers)
    assert resp.status_code == 400 and {"role", "is_active"} <= set(resp.json())


def test_deactivate_blocks_login_and_live_tokens(client, admin, factory, db) -> None:
    user = factory.user(password=PASSWORD)
    actor = login(client, user)
    assert client.delete(f"{URL}{user.id}/", headers=admin.headers).status_code == 204
    row = only_audit(db)
    assert (row.action, row.changes) == ("deactivate", {"is_active": [True, False]})
    assert client.get("/api/auth/me/", headers=actor.headers).status_code == 401
    assert client.get(f"{URL}{user.id}/", headers=admin.headers).json()["is_active"] is False
    # Deactivating again is a no-op: 204, no second audit row.
    assert client.delete(f"{URL}{user.id}/", headers=admin.headers).status_code == 204
    assert len(audit_rows(db)) == 1


def test_admin_cannot_deactivate_or_demote_self(client, admin, db) -> None:
    url = f"{URL}{admin.user.id}/"
    resp = client.delete(url, headers=admin.headers)
    assert resp.status_code == 400 and "own account" in resp.json()["detail"]
    resp = client.patch(url, json={"is_active": False, "role": "manager"}, headers=admin.headers)
    assert resp.status_code == 400 and set(resp.json()) == {"is_active", "role"}
    assert client.get("/api/auth/me/", headers=admin.headers).json()["role"] == "admin"
    assert audit_rows(db) == []


def test_managers_and_anonymous_are_refused(client, manager, admin) -> None:
    target = f"{URL}{admin.user.id}/"
    for method, path in (
        ("GET", URL),
        ("POST", URL),
        ("GET", target),
        ("PATCH", target),
        ("PUT", target),
        ("DELETE", target),
    ):
        body = {} if method in {"POST", "PATCH", "PUT"} else None
        assert client.request(method, path, json=body, headers=manager.headers).status_code == 403
        assert client.request(method, path, json=body).status_code == 401


def test_unknown_user_is_404(client, admin) -> None:
    for method in ("GET", "PATCH", "DELETE"):
        body = {"role": "manager"} if method == "PATCH" else None
        resp = client.request(method, f"{URL}999999/", json=body, headers=admin.headers)
        assert resp.status_code == 404
    assert client.get(f"{URL}abc/", headers=admin.headers).status_code == 400
    assert client.get(f"{URL}{2**64}/", headers=admin.headers).status_code == 400
