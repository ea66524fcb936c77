"""Schedules through HTTP: CRUD, weekday/time validation, overlap refusal, audit."""

from __future__ import annotations

import threading

from fastapi.testclient import TestClient

from tests.api.util import audit_rows, only_audit, table_state


def _url(project_id: int) -> str:
    return f"/api/projects/{project_id}/schedules/"


def test_crud_with_audit(client: TestClient, manager, factory, db) -> None:
    project = factory.project(members=[manager.user])
    url = _url(project.id)
    body = {"weekday": 0, "start_time": "09:00", "end_time": "13:00"}
    resp = client.post(url, json=body, headers=manager.headers)
    assert resp.status_code == 201, resp.text
    created = resp.json()
    assert created["start_time"] == "09:00:00" and created["is_active"] is True
    row = only_audit(db)
    assert (row.action, row.entity_type, row.entity_id) == (
        "create",
        "project_schedule",
        created["id"],
    )
    assert row.changes["project_id"] == [None, project.id]
    assert row.changes["start_time"] == [None, "09:00:00"]
    item = f"{url}{created['id']}/"
    assert client.get(item, headers=manager.headers).json() == created
    resp = client.patch(item, json={"end_time": "12:30"}, headers=manager.headers)
    assert resp.status_code == 200 and resp.json()["end_time"] == "12:30:00"
    assert audit_rows(db)[-1].changes == {"end_time": ["13:00:00", "12:30:00"]}
    resp = client.put(
        item,
        json={"weekday": 2, "start_time": "10:00", "end_time": "11:00", "is_active": False},
        headers=manager.headers,
    )
    assert resp.status_code == 200 and resp.json()["weekday"] == 2
    client.post(
        url,
        json={"weekday": 5, "start_time": "08:00", "end_time": "09:00"},
        headers=manager.headers,
    )
    page = client.get(url, params={"weekday": 2}, headers=manager.headers).json()
    assert [s["id"] for s in page["results"]] == [created["id"]]
    assert client.get(url, params={"is_active": True}, headers=manager.headers).json()["count"] == 1
    assert client.delete(item, headers=manager.headers).status_code == 204
    assert audit_rows(db)[-1].action == "delete"
    assert audit_rows(db)[-1].changes["weekday"] == [2, None]
    assert client.get(item, headers=manager.headers).status_code == 404


def test_validation_errors_name_the_field(client, admin, factory, db) -> None:
    project = factory.project()
    url = _url(project.id)
    ok = {"weekday": 1, "start_time": "09:00", "end_time": "18:00"}
    for patch, field in (
        ({"weekday": 7}, "weekday"),
        ({"weekday": -1}, "weekday"),
        ({"start_time": "25:00"}, "start_time"),
        ({"start_time": "09:00+03:00"}, "start_time"),
        ({"end_time": "09:00"}, "end_time"),  # start == end
        ({"end_time": "08:00"}, "end_time"),  # start > end
        ({"weekday": None}, "weekday"),
        ({"note": "x"}, "note"),
    ):
        resp = client.post(url, json={**ok, **patch}, headers=admin.headers)
        assert resp.status_code == 400 and field in resp.json(), (patch, resp.text)
    resp = client.get(url, params={"weekday": 9}, headers=admin.headers)
    assert resp.status_code == 400 and "weekday" in resp.json()
    assert audit_rows(db) == []


def test_overlapping_active_windows_are_refused(client, admin, factory, db) -> None:
    project = factory.project()
    url = _url(project.id)
    first = client.post(
        url, json={"weekday": 3, "start_time": "09:00", "end_time": "12:00"}, headers=admin.headers
    ).json()
    before = table_state(db, "project_schedules")
    n = len(audit_rows(db))
    for start, end in (
        ("11:00", "13:00"),
        ("08:00", "09:30"),
        ("10:00", "11:00"),
        ("08:00", "20:00"),
    ):
        resp = client.post(
            url, json={"weekday": 3, "start_time": start, "end_time": end}, headers=admin.headers
        )
        assert resp.status_code == 400, (start, end)
        assert "start_time" in resp.json() and f"id {first['id']}" in resp.json()["start_time"][0]
    assert table_state(db, "project_schedules") == before and len(audit_rows(db)) == n
    # Touching windows, other weekdays and inactive windows are fine.
    for body in (
        {"weekday": 3, "start_time": "12:00", "end_time": "14:00"},
        {"weekday": 4, "start_time": "10:00", "end_time": "11:00"},
        {"weekday": 3, "start_time": "10:00", "end_time": "11:00", "is_active": False},
    ):
        assert client.post(url, json=body, headers=admin.headers).status_code == 201, body
    # Re-activating the inactive overlapping window, or moving one onto another, is refused.
    inactive = client.get(url, params={"is_active": False}, headers=admin.headers).json()
    item = f"{url}{inactive['results'][0]['id']}/"
    resp = client.patch(item, json={"is_active": True}, headers=admin.headers)
    assert resp.status_code == 400 and "start_time" in resp.json()
    resp = client.patch(f"{url}{first['id']}/", json={"end_time": "12:30"}, headers=admin.headers)
    assert resp.status_code == 400
    resp = client.patch(f"{url}{first['id']}/", json={"end_time": "08:00"}, headers=admin.headers)
    assert resp.status_code == 400 and "end_time" in resp.json()
    # A window may be edited in place without clashing with itself.
    resp = client.patch(f"{url}{first['id']}/", json={"start_time": "08:00"}, headers=admin.headers)
    assert resp.status_code == 200


def test_concurrent_overlapping_creates_admit_one(client, admin, factory, db) -> None:
    """The project row lock serialises the check: of N racing overlapping windows, one lands."""
    project = factory.project()
    url = _url(project.id)
    statuses: list[int] = []

    def post(i: int) -> None:
        body = {"weekday": 6, "start_time": f"09:0{i}", "end_time": "17:00"}
        statuses.append(client.post(url, json=body, headers=admin.headers).status_code)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [201, 400, 400, 400]
    assert len(table_state(db, "project_schedules")["project_schedules"]) == 1
