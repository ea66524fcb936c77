"""Sessions end when they should: a password change or reset, a deactivation, the reuse of a
rotated refresh token, a logout. On every route, the pop-up's bare-connection path included."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select, text

from models.tables import AuditLog, User
from tests.api.conftest import PASSWORD, Actor, login

NEW_PASSWORD = "a-brand-new-passphrase"
POPUP = "/api/softphone/number/+79161234567/"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _works(client: TestClient, actor: Actor) -> bool:
    """Both tokens of an actor: the access token on two kinds of route, the refresh token by
    rotating it (which leaves the actor holding the new pair)."""
    me = client.get("/api/auth/me/", headers=actor.headers).status_code
    projects = client.get("/api/projects/", headers=actor.headers).status_code
    popup = client.get(POPUP, headers=actor.headers).status_code
    assert {me, projects} <= {200, 401} and popup in {404, 401}
    access_ok = me == 200
    assert (projects == 200) == access_ok and (popup == 404) == access_ok
    return access_ok


def _refresh(client: TestClient, refresh: str) -> dict[str, str] | None:
    resp = client.post("/api/auth/refresh/", json={"refresh": refresh})
    assert resp.status_code in {200, 401}, resp.text
    return resp.json() if resp.status_code == 200 else None


def test_admin_password_reset_ends_every_earlier_session(client, factory, admin) -> None:
    user = factory.user(password=PASSWORD)
    laptop, phone = login(client, user), login(client, user)
    resp = client.patch(
        f"/api/users/{user.id}/", headers=admin.headers, json={"password": NEW_PASSWORD}
    )
    assert resp.status_code == 200
    for session in (laptop, phone):
        assert not _works(client, session)
        assert _refresh(client, session.refresh) is None
    assert login(client, user, NEW_PASSWORD)
    assert _works(client, login(client, user, NEW_PASSWORD))


def test_a_stolen_refresh_token_does_not_rotate_through_resets(client, factory, admin) -> None:
    user = factory.user(password=PASSWORD)
    stolen = login(client, user).refresh
    for n in range(3):
        client.patch(
            f"/api/users/{user.id}/", headers=admin.headers, json={"password": f"{NEW_PASSWORD}{n}"}
        ).raise_for_status()
        assert _refresh(client, stolen) is None
        # Whatever the thief held before this reset is dead, however fresh.
        fresh = login(client, user, f"{NEW_PASSWORD}{n}")
        stolen = fresh.refresh
    assert _refresh(client, stolen) is not None  # the last, legitimate session lives on


def test_password_reset_by_sql_or_cli_ends_sessions_too(client, factory, session) -> None:
    """The rule lives in the schema (a trigger), not in one route."""
    user = factory.user(password=PASSWORD)
    actor = login(client, user)
    session.execute(
        text("UPDATE users SET password_hash = password_hash || '' || 'x' WHERE id = :id"),
        {"id": user.id},
    )
    session.commit()
    assert not _works(client, actor)
    assert _refresh(client, actor.refresh) is None


def test_reactivation_revives_no_token(client, factory, admin, session) -> None:
    user = factory.user(password=PASSWORD)
    by_api, by_sql = login(client, user), login(client, user)
    assert client.delete(f"/api/users/{user.id}/", headers=admin.headers).status_code == 204
    resp = client.patch(f"/api/users/{user.id}/", headers=admin.headers, json={"is_active": True})
    assert resp.status_code == 200 and resp.json()["is_active"] is True
    assert not _works(client, by_api)
    assert _refresh(client, by_api.refresh) is None
    for flag in ("false", "true"):  # the same when flipped behind the API's back
        session.execute(
            text(f"UPDATE users SET is_active = {flag} WHERE id = :id"), {"id": user.id}
        )
        session.commit()
    assert not _works(client, by_sql)
    assert _works(client, login(client, user))


def test_role_change_keeps_sessions_but_takes_effect(client, factory, admin) -> None:
    user = factory.user(password=PASSWORD)
    actor = login(client, user)
    client.patch(
        f"/api/users/{user.id}/", headers=admin.headers, json={"role": "admin"}
    ).raise_for_status()
    me = client.get("/api/auth/me/", headers=actor.headers)
    assert me.status_code == 200 and me.json()["role"] == "admin"


def test_reusing_a_rotated_refresh_token_ends_its_whole_family(client, factory) -> None:
    user = factory.user(password=PASSWORD)
    victim = login(client, user)
    other_device = login(client, user)
    # The thief rotates the stolen token first and holds the newest pair of that session.
    thief = _refresh(client, victim.refresh)
    assert thief is not None
    thief_next = _refresh(client, thief["refresh"])
    assert thief_next is not None
    # The victim's client presents the (already rotated) token: a reuse.
    reuse = client.post("/api/auth/refresh/", json={"refresh": victim.refresh})
    assert reuse.status_code == 401 and "session has been ended" in reuse.json()["detail"]
    # Every token of that login is dead now, the thief's newest included...
    assert client.get("/api/auth/me/", headers=_bearer(thief_next["access"])).status_code == 401
    assert _refresh(client, thief_next["refresh"]) is None
    assert client.get("/api/auth/me/", headers=victim.headers).status_code == 401
    # ...and the user's other sessions are not.
    assert _works(client, other_device)
    assert _refresh(client, other_device.refresh) is not None


def test_concurrent_reuse_cannot_fork_a_session(client, factory) -> None:
    """Two rotations of one refresh token: one wins, the other is a reuse and ends the family,
    so the winner's new pair is dead too — no second live chain."""
    from concurrent.futures import ThreadPoolExecutor

    actor = login(client, factory.user(password=PASSWORD))
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: _refresh(client, actor.refresh), range(8)))
    winners = [a for a in answers if a is not None]
    assert len(winners) <= 1
    for pair in winners:
        assert client.get("/api/auth/me/", headers=_bearer(pair["access"])).status_code == 401
        assert _refresh(client, pair["refresh"]) is None


def test_logout_ends_the_session_without_the_refresh_token(client, factory) -> None:
    user = factory.user(password=PASSWORD)
    actor, other = login(client, user), login(client, user)
    assert client.post("/api/auth/logout/", headers=actor.headers).status_code == 204
    assert client.get("/api/auth/me/", headers=actor.headers).status_code == 401
    assert _refresh(client, actor.refresh) is None
    assert _works(client, other)


def test_manager_changes_own_password(client, factory, session) -> None:
    user = factory.user(password=PASSWORD)
    here, elsewhere = login(client, user), login(client, user)
    resp = client.post(
        "/api/auth/password/",
        headers=here.headers,
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
    )
    assert resp.status_code == 200, resp.text
    fresh = resp.json()
    assert set(fresh) >= {"access", "refresh", "access_expires_at", "refresh_expires_at"}
    # Every earlier session ends, this one's old tokens included; the fresh pair works.
    for old in (here, elsewhere):
        assert not _works(client, old)
        assert _refresh(client, old.refresh) is None
    assert _works(client, Actor(user=user, access=fresh["access"], refresh=fresh["refresh"]))
    assert _refresh(client, fresh["refresh"]) is not None
    bad = client.post("/api/auth/login/", json={"username": user.username, "password": PASSWORD})
    assert bad.status_code == 401
    assert login(client, user, NEW_PASSWORD)
    audit = session.scalars(
        select(AuditLog).where(AuditLog.action == "password_change", AuditLog.user_id == user.id)
    ).all()
    assert len(audit) == 1 and audit[0].changes == {"password": ["***", "***"]}
    assert PASSWORD not in str(audit[0].changes) and NEW_PASSWORD not in str(audit[0].changes)


def test_admin_changes_own_password_too(client, admin) -> None:
    resp = client.post(
        "/api/auth/password/",
        headers=admin.headers,
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
    )
    assert resp.status_code == 200
    assert client.get("/api/users/", headers=_bearer(resp.json()["access"])).status_code == 200


def test_password_change_refuses_wrong_current_password_and_changes_nothing(
    client, factory, session, settings
) -> None:
    user = factory.user(password=PASSWORD)
    actor = login(client, user)
    before = session.scalar(select(User.password_hash).where(User.id == user.id))
    for body, field in (
        ({"current_password": "not-it-at-all", "new_password": NEW_PASSWORD}, "current_password"),
        ({"current_password": PASSWORD, "new_password": "short"}, "new_password"),
        ({"current_password": PASSWORD, "new_password": PASSWORD}, "new_password"),
        ({"current_password": PASSWORD, "new_password": "x\x00" * 8}, "new_password"),
        ({"current_password": PASSWORD, "new_password": 12345678}, "new_password"),
        ({"current_password": PASSWORD}, "new_password"),
        ({"current_password": PASSWORD, "new_password": NEW_PASSWORD, "role": "admin"}, "role"),
    ):
        resp = client.post("/api/auth/password/", headers=actor.headers, json=body)
        assert resp.status_code == 400 and field in resp.json(), (body, resp.text)
    session.expire_all()
    assert session.scalar(select(User.password_hash).where(User.id == user.id)) == before
    assert _works(client, actor)
    # Without a token: 401, never a password oracle.
    anon = client.post(
        "/api/auth/password/", json={"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    )
    assert anon.status_code == 401


def test_password_change_guesses_are_throttled_like_logins(client, factory, settings) -> None:
    """A stolen access token must not let its holder guess the password without limit."""
    user = factory.user(password=PASSWORD)
    actor = login(client, user)
    for _ in range(settings.login_max_failures):
        resp = client.post(
            "/api/auth/password/",
            headers=actor.headers,
            json={"current_password": "guess-guess", "new_password": NEW_PASSWORD},
        )
        assert resp.status_code == 400
    blocked = client.post(
        "/api/auth/password/",
        headers=actor.headers,
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
    )
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) >= 1
