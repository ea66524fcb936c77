"""A manager reaches nothing of a project they are not a member of: every route under
/api/projects/{project_id}/ (walked from the OpenAPI document, so later routes are covered)
answers 404 with valid bodies and real ids, and nothing changes."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient

from tests.api.util import audit_rows, table_state

TABLES = (
    "projects",
    "project_providers",
    "project_geo",
    "project_members",
    "project_schedules",
)


def _valid_body(method: str, path: str, ids: dict[str, int]) -> dict[str, Any] | None:
    """A body that would succeed on a project in scope (so only scope can refuse it)."""
    if method in {"GET", "DELETE"}:
        return None
    window = {"weekday": 2, "start_time": "10:00", "end_time": "11:00", "is_active": True}
    bodies = {
        "/api/projects/{project_id}/": {"name": "Hijacked", "status": "active"},
        "/api/projects/{project_id}/restore/": None,
        "/api/projects/{project_id}/providers/": {"provider_id": ids["spare_provider"]},
        "/api/projects/{project_id}/geo/": {"geo_id": ids["spare_geo"]},
        "/api/projects/{project_id}/members/": {"user_id": ids["spare_user"]},
        "/api/projects/{project_id}/schedules/": window,
        "/api/projects/{project_id}/schedules/{schedule_id}/": window,
        "/api/projects/{project_id}/dial-queue/lease/": {"holder": "agent-1", "count": 1},
        "/api/projects/{project_id}/dial-queue/release/": {"holder": "agent-1", "ids": [1]},
        "/api/projects/{project_id}/dial-queue/reset/": {"dry_run": True},
        "/api/projects/{project_id}/dialing-rules/": (
            {
                "max_attempts": 3,
                "min_gap_seconds": 60,
                "hand_out_order": "fresh_first",
                "outcomes": {},
            }
            if method == "PUT"
            else {"max_attempts": 3}
        ),
    }
    return bodies.get(path, {})


def test_manager_gets_404_on_every_route_of_another_project(
    client: TestClient, manager, other_manager, admin, factory, db
) -> None:
    theirs = factory.project(members=[other_manager.user])
    provider, geo = factory.provider(), factory.geo()
    schedule = factory.schedule(theirs)
    h = admin.headers
    client.post(
        f"/api/projects/{theirs.id}/providers/", json={"provider_id": provider.id}, headers=h
    )
    client.post(f"/api/projects/{theirs.id}/geo/", json={"geo_id": geo.id}, headers=h)
    ids = {
        "project_id": theirs.id,
        "schedule_id": schedule.id,
        "provider_id": provider.id,
        "geo_id": geo.id,
        "user_id": other_manager.user.id,
        "spare_provider": factory.provider().id,
        "spare_geo": factory.geo().id,
        "spare_user": manager.user.id,
    }
    schema = client.get("/api/openapi.json").json()
    before = table_state(db, *TABLES)
    n_audit = len(audit_rows(db))
    walked = []
    for path, item in schema["paths"].items():
        if not path.startswith("/api/projects/{project_id}"):
            continue
        for method in item:
            method = method.upper()
            if method not in {"GET", "POST", "PUT", "PATCH", "DELETE"}:
                continue
            url = re.sub(r"\{(\w+)\}", lambda m: str(ids.get(m.group(1), 1)), path)
            body = _valid_body(method, path, ids)
            resp = client.request(method, url, json=body, headers=manager.headers)
            walked.append((method, path))
            if path.endswith("/restore/"):
                # Restore looks among deleted projects; a live one is 404 for everybody.
                assert resp.status_code == 404
                continue
            if path.endswith("/dial-queue/reset/"):
                # Admins only: 403 for a manager whatever the project (nothing leaks).
                assert resp.status_code == 403, resp.text
                continue
            assert resp.status_code == 404, (method, path, resp.status_code, resp.text)
            # The same answer as for a project that does not exist at all: nothing leaks.
            assert resp.json() == {"detail": "Project not found."}, (method, path)
    assert len(walked) >= 18
    assert table_state(db, *TABLES) == before and len(audit_rows(db)) == n_audit
    # The owner (a member) does reach the same objects.
    resp = client.get(
        f"/api/projects/{theirs.id}/schedules/{schedule.id}/", headers=other_manager.headers
    )
    assert resp.status_code == 200


def test_deleted_project_of_another_manager_is_invisible(
    client, manager, other_manager, factory
) -> None:
    theirs = factory.project(members=[other_manager.user])
    assert (
        client.delete(f"/api/projects/{theirs.id}/", headers=other_manager.headers).status_code
        == 204
    )
    assert client.get("/api/projects/deleted/", headers=manager.headers).json()["count"] == 0
    resp = client.post(f"/api/projects/{theirs.id}/restore/", headers=manager.headers)
    assert resp.status_code == 404


def test_schedule_of_another_project_is_404_through_my_project(
    client, manager, other_manager, factory
) -> None:
    """Ids are checked against the project in the path: my project + their schedule id is 404."""
    mine = factory.project(members=[manager.user])
    theirs = factory.project(members=[other_manager.user])
    schedule = factory.schedule(theirs)
    url = f"/api/projects/{mine.id}/schedules/{schedule.id}/"
    for method, body in (("GET", None), ("PATCH", {"is_active": False}), ("DELETE", None)):
        resp = client.request(method, url, json=body, headers=manager.headers)
        assert resp.status_code == 404 and resp.json() == {"detail": "Schedule not found."}
