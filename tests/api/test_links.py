"""A project's providers, geo and members through HTTP: link, list, unlink, roles, audit."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api.util import audit_rows, only_audit, table_state


def test_manager_links_and_unlinks_providers_and_geo(
    client: TestClient, manager, factory, db
) -> None:
    project = factory.project(members=[manager.user])
    provider, geo = factory.provider(), factory.geo()
    base = f"/api/projects/{project.id}"
    for kind, field, obj in (("providers", "provider_id", provider), ("geo", "geo_id", geo)):
        resp = client.post(f"{base}/{kind}/", json={field: obj.id}, headers=manager.headers)
        assert resp.status_code == 201, resp.text
        assert resp.json()["id"] == obj.id and resp.json()["linked_at"]
        row = audit_rows(db)[-1]
        assert (row.action, row.entity_type, row.entity_id) == (
            f"link_{'provider' if kind == 'providers' else 'geo'}",
            "project",
            project.id,
        )
        assert row.changes == {field: [None, obj.id]} and row.user_id == manager.user.id
        page = client.get(f"{base}/{kind}/", headers=manager.headers).json()
        assert page["count"] == 1 and page["results"][0]["id"] == obj.id
        # Linking twice is a 409 with no second row; a missing object is a 400 naming the field.
        n = len(audit_rows(db))
        again = client.post(f"{base}/{kind}/", json={field: obj.id}, headers=manager.headers)
        assert again.status_code == 409 and "already linked" in again.json()["detail"]
        missing = client.post(f"{base}/{kind}/", json={field: 424242}, headers=manager.headers)
        assert missing.status_code == 400 and field in missing.json()
        for bad in ({}, {field: "x"}, {field: 0}, {field: 1, "extra": 1}):
            resp = client.post(f"{base}/{kind}/", json=bad, headers=manager.headers)
            assert resp.status_code == 400, (bad, resp.text)
        assert len(audit_rows(db)) == n
        assert client.delete(f"{base}/{kind}/{obj.id}/", headers=manager.headers).status_code == 204
        assert audit_rows(db)[-1].changes == {field: [obj.id, None]}
        assert audit_rows(db)[-1].action.startswith("unlink_")
        resp = client.delete(f"{base}/{kind}/{obj.id}/", headers=manager.headers)
        assert resp.status_code == 404
        assert client.get(f"{base}/{kind}/", headers=manager.headers).json()["count"] == 0


def test_members_admin_only_writes(client, admin, manager, factory, db) -> None:
    project = factory.project(members=[manager.user])
    newcomer = factory.user()
    url = f"/api/projects/{project.id}/members/"
    page = client.get(url, headers=manager.headers).json()
    assert [m["user_id"] for m in page["results"]] == [manager.user.id]
    resp = client.post(url, json={"user_id": newcomer.id}, headers=manager.headers)
    assert resp.status_code == 403
    resp = client.delete(f"{url}{manager.user.id}/", headers=manager.headers)
    assert resp.status_code == 403
    assert audit_rows(db) == []
    resp = client.post(url, json={"user_id": newcomer.id}, headers=admin.headers)
    assert resp.status_code == 201 and resp.json()["username"] == newcomer.username
    row = only_audit(db)
    assert (row.action, row.entity_id, row.changes) == (
        "add_member",
        project.id,
        {"user_id": [None, newcomer.id]},
    )
    assert client.post(url, json={"user_id": newcomer.id}, headers=admin.headers).status_code == 409
    assert client.delete(f"{url}{newcomer.id}/", headers=admin.headers).status_code == 204
    assert audit_rows(db)[-1].action == "remove_member"
    assert client.delete(f"{url}{newcomer.id}/", headers=admin.headers).status_code == 404


def test_member_must_be_an_active_user(client, admin, factory, db) -> None:
    project = factory.project()
    inactive = factory.user(is_active=False)
    url = f"/api/projects/{project.id}/members/"
    before = table_state(db, "project_members")
    for user_id in (inactive.id, 999999):
        resp = client.post(url, json={"user_id": user_id}, headers=admin.headers)
        assert resp.status_code == 400 and "user_id" in resp.json()
    assert table_state(db, "project_members") == before and audit_rows(db) == []


def test_membership_grants_and_revokes_access(client, admin, manager, factory) -> None:
    project = factory.project()
    url = f"/api/projects/{project.id}/"
    assert client.get(url, headers=manager.headers).status_code == 404
    members = f"{url}members/"
    client.post(members, json={"user_id": manager.user.id}, headers=admin.headers)
    assert client.get(url, headers=manager.headers).status_code == 200
    client.delete(f"{members}{manager.user.id}/", headers=admin.headers)
    assert client.get(url, headers=manager.headers).status_code == 404


def test_nested_lists_are_401_anonymously(client, factory) -> None:
    project = factory.project()
    for kind in ("providers", "geo", "members", "schedules"):
        assert client.get(f"/api/projects/{project.id}/{kind}/").status_code == 401
