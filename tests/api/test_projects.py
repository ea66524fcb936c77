"""Projects through HTTP: CRUD, filters, ordering, soft delete / restore, roles and scope."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api.util import audit_rows, only_audit, table_state

URL = "/api/projects/"


def test_admin_creates_reads_and_lists(client: TestClient, admin, db) -> None:
    resp = client.post(
        URL, json={"code": "spring-24", "name": "Spring", "description": "d"}, headers=admin.headers
    )
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["code"] == "spring-24" and body["status"] == "active"
    assert body["created_by"] == admin.user.id and body["is_deleted"] is False
    row = only_audit(db)
    assert (row.action, row.entity_type, row.entity_id, row.user_id) == (
        "create",
        "project",
        body["id"],
        admin.user.id,
    )
    assert row.changes["code"] == [None, "spring-24"]
    assert row.user_agent == "testclient" and row.ip_address is None  # TestClient host
    got = client.get(f"{URL}{body['id']}/", headers=admin.headers)
    assert got.status_code == 200 and got.json() == body
    page = client.get(URL, headers=admin.headers).json()
    assert page["count"] == 1 and page["results"][0]["id"] == body["id"]


def test_manager_cannot_create(client, manager, db) -> None:
    resp = client.post(URL, json={"code": "x", "name": "X"}, headers=manager.headers)
    assert resp.status_code == 403
    assert audit_rows(db) == []


def test_create_validation_errors_name_the_field(client, admin, db) -> None:
    cases = [
        ({"name": "X"}, "code"),
        ({"code": "Bad Code", "name": "X"}, "code"),
        ({"code": "-x", "name": "X"}, "code"),
        ({"code": "x" * 64, "name": "X"}, "code"),
        ({"code": "ok"}, "name"),
        ({"code": "ok", "name": "   "}, "name"),
        ({"code": "ok", "name": "X", "status": "deleted"}, "status"),
        ({"code": "ok", "name": "X", "bogus": 1}, "bogus"),
        ({"code": "ok", "name": "X\x00"}, "name"),
    ]
    for body, field in cases:
        resp = client.post(URL, json=body, headers=admin.headers)
        assert resp.status_code == 400, (body, resp.text)
        assert field in resp.json(), (body, resp.json())
        assert all(isinstance(m, list) for m in resp.json().values())
    assert audit_rows(db) == []


def test_duplicate_code_is_409_and_leaves_nothing(client, admin, factory, db) -> None:
    factory.project(code="taken")
    before = table_state(db, "projects")
    resp = client.post(URL, json={"code": "taken", "name": "Again"}, headers=admin.headers)
    assert resp.status_code == 409 and "already exists" in resp.json()["detail"].lower()
    assert table_state(db, "projects") == before
    assert audit_rows(db) == []


def test_filters_search_and_ordering(client, admin, factory) -> None:
    factory.project(code="alpha", name="Alpha 100%")
    factory.project(code="beta", name="Beta", status="paused")
    factory.project(code="gamma", name="Gamma_x")
    h = admin.headers

    def codes(**params) -> list[str]:
        resp = client.get(URL, params=params, headers=h)
        assert resp.status_code == 200, resp.text
        return [p["code"] for p in resp.json()["results"]]

    assert codes(status="paused") == ["beta"]
    assert codes(search="ALP") == ["alpha"]
    assert codes(search="100%") == ["alpha"]  # % is literal
    assert codes(search="a_x") == ["gamma"]  # _ is literal
    assert codes(ordering="-code") == ["gamma", "beta", "alpha"]
    assert codes(created_after="2000-01-01T00:00:00Z", ordering="name") == [
        "alpha",
        "beta",
        "gamma",
    ]
    assert codes(created_before="2000-01-01T00:00:00Z") == []
    for params, field in (
        ({"ordering": "nope"}, "ordering"),
        ({"status": "deleted"}, "status"),
        ({"created_after": "yesterday"}, "created_after"),
        ({"page": 0}, "page"),
        ({"page_size": 1001}, "page_size"),
        ({"stauts": "paused"}, "stauts"),  # a typo is refused, not silently ignored
    ):
        resp = client.get(URL, params=params, headers=h)
        assert resp.status_code == 400 and field in resp.json(), (params, resp.text)


def test_pagination_links_keep_filters(client, admin, factory) -> None:
    for _ in range(3):
        factory.project(status="paused")
    resp = client.get(URL, params={"status": "paused", "page_size": 2}, headers=admin.headers)
    body = resp.json()
    assert body["count"] == 3 and len(body["results"]) == 2 and body["previous"] is None
    assert body["next"].startswith("http://testserver/api/projects/")
    assert "status=paused" in body["next"] and "page=2" in body["next"]
    second = client.get(body["next"], headers=admin.headers).json()
    assert len(second["results"]) == 1 and second["next"] is None and second["previous"]


def test_put_and_patch_update_and_audit_changed_fields_only(client, admin, factory, db) -> None:
    project = factory.project(name="Old", description="keep")
    url = f"{URL}{project.id}/"
    resp = client.patch(url, json={"name": "New"}, headers=admin.headers)
    assert resp.status_code == 200 and resp.json()["name"] == "New"
    assert resp.json()["description"] == "keep"
    row = only_audit(db)
    assert (row.action, row.changes) == ("update", {"name": ["Old", "New"]})
    # PUT replaces: an omitted nullable field becomes null.
    resp = client.put(url, json={"name": "New", "status": "paused"}, headers=admin.headers)
    assert resp.status_code == 200 and resp.json()["description"] is None
    rows = audit_rows(db)
    assert rows[-1].changes == {"description": ["keep", None], "status": ["active", "paused"]}
    # A no-op update writes no audit row.
    assert client.patch(url, json={"name": "New"}, headers=admin.headers).status_code == 200
    assert len(audit_rows(db)) == 2
    for body, field in (
        ({"name": None}, "name"),
        ({"status": "deleted"}, "status"),
        ({"code": "other"}, "code"),  # fixed at creation
    ):
        resp = client.patch(url, json=body, headers=admin.headers)
        assert resp.status_code == 400 and field in resp.json(), resp.text
    resp = client.put(url, json={"name": "X"}, headers=admin.headers)
    assert resp.status_code == 400 and "status" in resp.json()
    assert len(audit_rows(db)) == 2


def test_soft_delete_hides_everywhere_and_restore_brings_back(
    client, admin, manager, factory, db
) -> None:
    project = factory.project(members=[manager.user], status="paused")
    url = f"{URL}{project.id}/"
    assert client.delete(url, headers=manager.headers).status_code == 204
    row = only_audit(db)
    assert row.action == "soft_delete" and row.user_id == manager.user.id
    assert row.changes["status"] == ["paused", "deleted"]
    assert row.changes["is_deleted"] == [False, True]
    for who in (admin, manager):
        assert client.get(url, headers=who.headers).status_code == 404
        assert client.get(URL, headers=who.headers).json()["count"] == 0
        assert client.patch(url, json={"name": "x"}, headers=who.headers).status_code == 404
        assert client.delete(url, headers=who.headers).status_code == 404
        for nested in ("providers", "geo", "members", "schedules"):
            assert client.get(f"{url}{nested}/", headers=who.headers).status_code == 404
        deleted = client.get(f"{URL}deleted/", headers=who.headers).json()
        assert [p["id"] for p in deleted["results"]] == [project.id]
        assert deleted["results"][0]["deleted_at"] is not None
    resp = client.post(f"{url}restore/", headers=manager.headers)
    assert resp.status_code == 200
    body = resp.json()
    assert (body["status"], body["is_deleted"], body["deleted_at"]) == ("active", False, None)
    assert audit_rows(db)[-1].action == "restore"
    # Restoring a live project is 404: only deleted ones can be restored.
    assert client.post(f"{url}restore/", headers=admin.headers).status_code == 404
    assert client.get(f"{URL}deleted/", headers=admin.headers).json()["count"] == 0


def test_manager_sees_only_member_projects(client, manager, other_manager, factory) -> None:
    mine = factory.project(members=[manager.user])
    theirs = factory.project(members=[other_manager.user])
    page = client.get(URL, headers=manager.headers).json()
    assert [p["id"] for p in page["results"]] == [mine.id]
    assert client.get(f"{URL}{mine.id}/", headers=manager.headers).status_code == 200
    resp = client.patch(f"{URL}{mine.id}/", json={"status": "paused"}, headers=manager.headers)
    assert resp.status_code == 200
    for method, path, body in (
        ("GET", f"{URL}{theirs.id}/", None),
        ("PUT", f"{URL}{theirs.id}/", {"name": "x", "status": "active"}),
        ("PATCH", f"{URL}{theirs.id}/", {"name": "x"}),
        ("DELETE", f"{URL}{theirs.id}/", None),
    ):
        resp = client.request(method, path, json=body, headers=manager.headers)
        assert resp.status_code == 404, (method, path)
        assert resp.json() == {"detail": "Project not found."}


def test_anonymous_and_bad_tokens_are_401(client, factory, admin) -> None:
    project = factory.project()
    bad = {"Authorization": f"Bearer {admin.access[:-3]}xyz"}
    for headers in ({}, bad, {"Authorization": "Basic abc"}):
        assert client.get(URL, headers=headers).status_code == 401
        assert client.get(f"{URL}{project.id}/", headers=headers).status_code == 401
        assert client.post(URL, json={}, headers=headers).status_code == 401
    # A revoked (logged-out) token stops working on every route at once.
    assert client.post("/api/auth/logout/", headers=admin.headers).status_code == 204
    assert client.get(URL, headers=admin.headers).status_code == 401
