"""The audit log endpoint (admin only, filters, ordering) and the all-or-nothing rule: a
mutation that fails at any step, the change or its audit row, leaves neither behind."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from tests.api.util import audit_rows, table_state

URL = "/api/audit-log/"


def test_lists_with_filters_and_ordering(client: TestClient, admin, factory) -> None:
    h = admin.headers
    project = client.post("/api/projects/", json={"code": "p1", "name": "P"}, headers=h).json()
    client.patch(f"/api/projects/{project['id']}/", json={"name": "Q"}, headers=h)
    client.post("/api/providers/", json={"code": "v1", "name": "V"}, headers=h)
    page = client.get(URL, headers=h).json()
    # Newest first; logins are audited too.
    actions = [r["action"] for r in page["results"]]
    assert actions[:3] == ["create", "update", "create"] and "login" in actions
    first = page["results"][0]
    assert first["entity_type"] == "provider" and first["user_agent"] == "testclient"
    assert first["user_id"] == admin.user.id

    def ids(**params) -> list[int]:
        resp = client.get(URL, params=params, headers=h)
        assert resp.status_code == 200, resp.text
        return [r["id"] for r in resp.json()["results"]]

    by_project = client.get(
        URL, params={"entity_type": "project", "entity_id": project["id"]}, headers=h
    ).json()
    assert [r["action"] for r in by_project["results"]] == ["update", "create"]
    assert by_project["results"][0]["changes"] == {"name": ["P", "Q"]}
    assert len(ids(action="create")) == 2
    assert len(ids(user_id=admin.user.id)) == page["count"]
    assert ids(user_id=999999) == []
    assert ids(created_before="2000-01-01T00:00:00Z") == []
    assert len(ids(created_after="2000-01-01T00:00:00Z")) == page["count"]
    assert ids(ordering="id") == sorted(ids())
    for params, field in (
        ({"ordering": "changes"}, "ordering"),
        ({"user_id": "me"}, "user_id"),
        ({"entity_id": 0}, "entity_id"),
        ({"created_after": "soon"}, "created_after"),
    ):
        resp = client.get(URL, params=params, headers=h)
        assert resp.status_code == 400 and field in resp.json(), (params, resp.text)


def test_admin_only(client, manager) -> None:
    assert client.get(URL, headers=manager.headers).status_code == 403
    assert client.get(URL).status_code == 401


@pytest.fixture
def failing_triggers(db: Engine) -> Iterator[None]:
    """Real PostgreSQL failures: one refuses a project change, one refuses an audit row."""
    with db.begin() as conn:
        conn.execute(
            text(
                """
                CREATE FUNCTION test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN RAISE EXCEPTION 'refused by test trigger'; END $$;
                CREATE TRIGGER test_refuse_project BEFORE UPDATE ON projects FOR EACH ROW
                    WHEN (NEW.name = 'boom-change') EXECUTE FUNCTION test_refuse();
                CREATE TRIGGER test_refuse_audit BEFORE INSERT ON audit_log FOR EACH ROW
                    WHEN (NEW.changes::text LIKE '%boom-audit%') EXECUTE FUNCTION test_refuse();
                """
            )
        )
    try:
        yield
    finally:
        with db.begin() as conn:
            conn.execute(text("DROP TRIGGER test_refuse_project ON projects"))
            conn.execute(text("DROP TRIGGER test_refuse_audit ON audit_log"))
            conn.execute(text("DROP FUNCTION test_refuse()"))


def test_failed_mutation_leaves_no_change_and_no_audit_row(
    client, admin, factory, db, failing_triggers
) -> None:
    project = factory.project(name="Before")
    url = f"/api/projects/{project.id}/"
    before = table_state(db, "projects", "audit_log")
    # The change itself fails (after nothing was audited yet).
    resp = client.patch(url, json={"name": "boom-change"}, headers=admin.headers)
    assert resp.status_code == 503, resp.text  # a database refusal we did not expect
    # The change succeeds in SQL but its audit row fails: the change must roll back too.
    resp = client.patch(url, json={"name": "boom-audit"}, headers=admin.headers)
    assert resp.status_code == 503, resp.text  # a database refusal we did not expect
    resp = client.post(
        "/api/projects/", json={"code": "new", "name": "boom-audit"}, headers=admin.headers
    )
    assert resp.status_code == 503, resp.text  # a database refusal we did not expect
    assert table_state(db, "projects", "audit_log") == before
    assert client.get(url, headers=admin.headers).json()["name"] == "Before"
    # And the API keeps working afterwards (the failed transactions were rolled back).
    resp = client.patch(url, json={"name": "After"}, headers=admin.headers)
    assert resp.status_code == 200
    assert [r.changes for r in audit_rows(db)] == [{"name": ["Before", "After"]}]
