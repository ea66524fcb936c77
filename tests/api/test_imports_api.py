"""/api/imports/ and /api/providers/{id}/quality/ without marts: scope (404 outside), filters,
bad input (400 naming the field, nothing changed) and the audited lead cost."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, text

from models.tables import AuditLog
from tests.api.util import table_state

URL = "/api/imports/"
MARTS = ("fct_lead_quality_load", "fct_lead_quality_provider", "fct_lead_quality_provider_geo",
         "fct_lead_quality_cohort")  # fmt: skip


def drop_marts(engine: Engine) -> None:
    """As before the first dbt run (another test's build may have left them)."""
    with engine.begin() as conn:
        for mart in MARTS:
            conn.execute(text(f"DROP TABLE IF EXISTS analytics.{mart}"))


def _bulk(client, actor, project_id: int, numbers: list[object], **extra: Any) -> int:  # type: ignore[no-untyped-def]
    resp = client.post(
        "/api/phone-numbers/bulk/",
        json={"project_id": project_id, "numbers": numbers, **extra},
        headers=actor.headers,
    )
    assert resp.status_code == 200, resp.text
    return int(resp.json()["load_id"])


def test_manager_sees_only_their_projects_loads(client, manager, other_manager, factory) -> None:
    mine = factory.project(members=[manager.user])
    theirs = factory.project(members=[other_manager.user])
    provider = factory.provider()
    my_load = _bulk(client, manager, mine.id, ["+79160000001", "bad"], provider_id=provider.id)
    their_load = _bulk(client, other_manager, theirs.id, ["+79160000002"])
    page = client.get(URL, headers=manager.headers).json()
    assert [r["id"] for r in page["results"]] == [my_load] and page["count"] == 1
    row = page["results"][0]
    assert (row["kind"], row["rows_read"], row["inserted"], row["invalid"]) == ("api", 2, 1, 1)
    assert row["provider_id"] == provider.id and row["created_by"] == manager.user.id
    # Every route to the other project's load is a 404, never a 403 or an empty 200.
    assert client.get(f"{URL}{their_load}/", headers=manager.headers).status_code == 404
    assert (
        client.get(URL, params={"project_id": theirs.id}, headers=manager.headers).status_code
        == 404
    )
    resp = client.patch(f"{URL}{their_load}/", json={"lead_cost": 1}, headers=manager.headers)
    assert resp.status_code == 404
    # A filter that names the other project's provider finds nothing of theirs.
    page = client.get(URL, params={"provider_id": provider.id}, headers=other_manager.headers)
    assert page.json()["results"] == []


def test_admin_filters(client, admin, factory) -> None:
    one, two = factory.project(), factory.project()
    provider = factory.provider()
    a = _bulk(client, admin, one.id, ["+79160000001"], provider_id=provider.id)
    b = _bulk(client, admin, two.id, ["+79160000002"])

    def ids(**params: Any) -> list[int]:
        resp = client.get(URL, params=params, headers=admin.headers)
        assert resp.status_code == 200, resp.text
        return [r["id"] for r in resp.json()["results"]]

    assert ids() == [b, a]  # newest first
    assert ids(project_id=one.id) == [a]
    assert ids(provider_id=provider.id) == [a]
    assert ids(kind="sftp") == []
    assert ids(ordering="id") == [a, b]
    assert ids(created_after="2999-01-01T00:00:00Z") == []
    assert ids(created_before="2000-01-01T00:00:00Z") == []
    for params, field in (
        ({"created_after": "2024-02-01T00:00:00Z", "created_before": "2024-01-01T00:00:00Z"},
         "created_after"),
        ({"created_after": "yesterday"}, "created_after"),
        ({"project_id": "0"}, "project_id"),
        ({"kind": "ftp"}, "kind"),
        ({"ordering": "secret"}, "ordering"),
        ({"bogus": "1"}, "bogus"),
    ):  # fmt: skip
        resp = client.get(URL, params=params, headers=admin.headers)
        assert resp.status_code == 400 and field in resp.json(), (params, resp.text)
    assert client.get(f"{URL}999999/", headers=admin.headers).status_code == 404


def test_detail_before_dbt_has_no_quality(client, manager, factory, db) -> None:
    drop_marts(db)
    project = factory.project(members=[manager.user])
    load = _bulk(client, manager, project.id, ["+79160000001"])
    body = client.get(f"{URL}{load}/", headers=manager.headers).json()
    assert body["id"] == load and body["quality"] is None


def test_lead_cost_is_patched_audited_and_validated(client, manager, factory, db, session) -> None:
    project = factory.project(members=[manager.user])
    load = _bulk(client, manager, project.id, ["+79160000001"])
    resp = client.patch(f"{URL}{load}/", json={"lead_cost": 12.34}, headers=manager.headers)
    assert resp.status_code == 200 and resp.json()["lead_cost"] == 12.34
    again = client.patch(f"{URL}{load}/", json={"lead_cost": 12.34}, headers=manager.headers)
    assert again.status_code == 200
    rows = session.query(AuditLog).filter_by(entity_type="number_load", entity_id=load).all()
    assert [r.changes for r in rows] == [{"lead_cost": [None, 12.34]}]  # no row for a no-op
    before = table_state(db, "number_loads", "audit_log")
    for bad in (-1, "12", True, 1e13, None.__class__.__name__, [1], {"x": 1}):
        resp = client.patch(f"{URL}{load}/", json={"lead_cost": bad}, headers=manager.headers)
        assert resp.status_code == 400 and "lead_cost" in resp.json(), (bad, resp.text)
    resp = client.patch(f"{URL}{load}/", json={"rows_read": 0}, headers=manager.headers)
    assert resp.status_code == 400
    assert table_state(db, "number_loads", "audit_log") == before
    cleared = client.patch(f"{URL}{load}/", json={"lead_cost": None}, headers=manager.headers)
    assert cleared.json()["lead_cost"] is None


def test_provider_quality_before_dbt_and_its_scope(
    client, manager, other_manager, factory, db
) -> None:
    drop_marts(db)
    theirs = factory.project(members=[other_manager.user])
    provider = factory.provider()
    url = f"/api/providers/{provider.id}/quality/"
    resp = client.get(url, headers=manager.headers)
    assert resp.status_code == 200, resp.text
    assert resp.json()["computed"] is False
    assert resp.json()["by_project"] == [] and resp.json()["overall"] is None
    assert client.get("/api/providers/999999/quality/", headers=manager.headers).status_code == 404
    resp = client.get(url, params={"project_id": theirs.id}, headers=manager.headers)
    assert resp.status_code == 404
    assert client.get(url).status_code == 401
