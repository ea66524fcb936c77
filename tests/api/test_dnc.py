"""/api/dnc/: CRUD and bulk (JSON and CSV), scope (a manager never reads or changes another
project's list or the global list, by any route), audit, the effect on exports and imports,
and the SoftPhone opt-out outcome."""

from __future__ import annotations

import datetime as dt
import json

from sqlalchemy import select

from api.webhook_auth import signed_headers
from models.tables import AuditLog, DncEntry
from tests.api.conftest import TEST_SETTINGS

URL = "/api/dnc/"
SECRET = TEST_SETTINGS["softphone_webhook_secret"]


def test_crud_normalises_audits_and_refuses_bad_input(client, manager, factory, session) -> None:
    project = factory.project(members=[manager.user])
    first = {"phone_number": "8 (916) 123-45-67", "project_id": project.id, "reason": "asked"}
    resp = client.post(URL, json=first, headers=manager.headers)
    assert resp.status_code == 201, resp.text
    entry = resp.json()
    assert (entry["phone_number"], entry["added_by"]) == ("+79161234567", manager.user.id)
    again = client.post(URL, json={"phone_number": "+79161234567", "project_id": project.id,
                                   "reason": "twice"}, headers=manager.headers)  # fmt: skip
    assert again.status_code == 409
    url = f"{URL}{entry['id']}/"
    expiry = "2031-01-01T00:00:00+00:00"
    patched = client.patch(url, json={"expires_at": expiry}, headers=manager.headers)
    assert patched.status_code == 200 and patched.json()["expires_at"].startswith("2031")
    for bad in (
        {"phone_number": "call me", "project_id": project.id, "reason": "x"},
        {"phone_number": "+79161234568", "project_id": project.id, "reason": ""},
        {"phone_number": "+79161234568", "project_id": project.id, "reason": "x", "extra": 1},
        {"phone_number": "+79161234568", "project_id": project.id, "reason": "x",
         "source": "bad source!"},
        {"phone_number": "+79161234568", "project_id": project.id, "reason": "x" * 1001},
    ):  # fmt: skip
        r = client.post(URL, json=bad, headers=manager.headers)
        assert r.status_code == 400, (bad, r.text)
    assert client.patch(url, json={"reason": None}, headers=manager.headers).status_code == 400
    assert client.delete(url, headers=manager.headers).status_code == 204
    assert client.get(url, headers=manager.headers).status_code == 404
    actions = session.scalars(
        select(AuditLog.action).where(AuditLog.entity_type == "dnc_entry").order_by(AuditLog.id)
    ).all()
    assert actions == ["create", "update", "delete"]


def test_manager_cannot_reach_another_projects_list_or_the_global_one(
    client, admin, manager, other_manager, factory
) -> None:
    mine = factory.project(members=[manager.user])
    theirs = factory.project(members=[other_manager.user])
    glob = client.post(URL, json={"phone_number": "+79160000001", "reason": "regulator"},
                       headers=admin.headers).json()  # fmt: skip
    theirs_entry = {"phone_number": "+79160000002", "project_id": theirs.id, "reason": "x"}
    other = client.post(URL, json=theirs_entry, headers=other_manager.headers).json()
    own = client.post(URL, json={"phone_number": "+79160000003", "project_id": mine.id,
                                 "reason": "x"}, headers=manager.headers).json()  # fmt: skip
    h = manager.headers
    # Reading: the list shows only their own; the global scope is refused; others are 404.
    listed = client.get(URL, headers=h).json()
    assert [e["id"] for e in listed["results"]] == [own["id"]]
    assert client.get(URL, params={"scope": "global"}, headers=h).status_code == 403
    assert client.get(URL, params={"project_id": theirs.id}, headers=h).status_code == 404
    assert client.get(URL, params={"phone": "+79160000001"}, headers=h).json()["count"] == 0
    for entry in (glob, other):
        url = f"{URL}{entry['id']}/"
        assert client.get(url, headers=h).status_code == 404
        assert client.patch(url, json={"reason": "mine now"}, headers=h).status_code == 404
        assert client.delete(url, headers=h).status_code == 404
    # Writing: the global list and another project's, single and bulk, JSON and CSV.
    assert client.post(URL, json={"phone_number": "+79160000009", "reason": "x"},
                       headers=h).status_code == 403  # fmt: skip
    assert client.post(URL, json={"phone_number": "+79160000009", "project_id": theirs.id,
                                  "reason": "x"}, headers=h).status_code == 404  # fmt: skip
    bulk = {"reason": "x", "numbers": ["+79160000010"]}
    assert client.post(URL + "bulk/", json=bulk, headers=h).status_code == 403
    assert client.post(URL + "bulk/", json={**bulk, "project_id": theirs.id},
                       headers=h).status_code == 404  # fmt: skip
    csv_resp = client.post(URL + "bulk/", params={"project_id": theirs.id, "reason": "x"},
                           content=b"phone\n+79160000011\n",
                           headers={**h, "content-type": "text/csv"})  # fmt: skip
    assert csv_resp.status_code == 404
    assert client.get(URL, params={"scope": "global"}, headers=admin.headers).json()["count"] == 1
    assert client.get(URL, headers=other_manager.headers).json()["count"] == 1


def test_bulk_json_and_csv_count_and_reject(client, admin, factory, session) -> None:
    project = factory.project()
    resp = client.post(URL + "bulk/", json={
        "project_id": project.id, "reason": "campaign opt-outs", "source": "import",
        "numbers": ["+79160000001", "8 916 000-00-01", "nonsense", 79160000002],
    }, headers=admin.headers)  # fmt: skip
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["read"], body["added"], body["updated"], body["invalid"]) == (4, 2, 0, 1)
    assert body["rejects"][0]["line"] == 3
    csv_body = "телефон;comment\n+79160000002;x\n+79160000003;y\n\n".encode("cp1251")
    resp = client.post(
        URL + "bulk/", content=csv_body,
        params={"reason": "from a file", "encoding": "cp1251"},
        headers={**admin.headers, "content-type": "text/csv"},
    )  # fmt: skip
    assert resp.status_code == 200, resp.text
    assert (resp.json()["added"], resp.json()["project_id"]) == (2, None)  # global
    resp = client.post(
        URL + "bulk/", content=b"phone\n+79160000002\n+79160000003\n",
        params={"reason": "a new reason"}, headers={**admin.headers, "content-type": "text/csv"},
    )  # fmt: skip
    assert resp.status_code == 200, resp.text
    assert (resp.json()["added"], resp.json()["updated"]) == (0, 2)
    for params in ({"reason": "x", "encoding": "klingon"}, {"reason": ""}, {"project_id": "0"}):
        r = client.post(URL + "bulk/", content=b"phone\n+79160000002\n", params=params,
                        headers={**admin.headers, "content-type": "text/csv"})  # fmt: skip
        assert r.status_code == 400, (params, r.text)
    bad = client.post(URL + "bulk/", content=b"name\nx\n", params={"reason": "x"},
                      headers={**admin.headers, "content-type": "text/csv"})  # fmt: skip
    assert bad.status_code == 400
    assert client.post(URL + "bulk/", content=b"x", headers={**admin.headers,
                       "content-type": "text/plain"}).status_code == 400  # fmt: skip
    audits = session.scalars(select(AuditLog).where(AuditLog.action == "dnc_bulk_add")).all()
    assert [a.changes["added"] for a in audits] == [2, 2, 0]


def test_exports_leave_listed_numbers_out_unless_asked_and_imports_count_them(
    client, admin, factory, session
) -> None:
    project = factory.project()
    factory.number(project, "+79160000001")
    factory.number(project, "+79160000002")
    session.add(DncEntry(project_id=None, phone_number="+79160000001", reason="x"))
    session.commit()
    csv = client.get("/api/phone-numbers/export.csv", params={"project_id": project.id},
                     headers=admin.headers).text  # fmt: skip
    assert "+79160000002" in csv and "+79160000001" not in csv
    csv = client.get("/api/phone-numbers/export.csv",
                     params={"project_id": project.id, "include_dnc": "true"},
                     headers=admin.headers).text  # fmt: skip
    assert "+79160000001" in csv
    other = factory.project()
    resp = client.post("/api/phone-numbers/bulk/", json={
        "project_id": other.id, "numbers": ["+79160000001", "+79160000003"]},
        headers=admin.headers)  # fmt: skip
    assert resp.json()["on_dnc"] == 1


def test_softphone_opt_out_lists_the_number_for_its_project(client, factory, session) -> None:
    project, elsewhere = factory.project(), factory.project()
    number = factory.number(project, "+79160000001")
    factory.number(elsewhere, "+79160000001")
    at = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)).isoformat()
    events = [
        {"event_id": "e-1", "event_type": "call_result", "phone_number": "+79160000001",
         "occurred_at": at, "status": "failed", "project_id": project.id,
         "result_data": {"opt_out": True, "note": "do not call me again"}},
        # Not an opt-out: "true" as a string, or opt_out false.
        {"event_id": "e-2", "event_type": "call_result", "phone_number": "+79160000001",
         "occurred_at": at, "status": "failed", "project_id": elsewhere.id,
         "result_data": {"opt_out": "true"}},
    ]  # fmt: skip
    body = json.dumps(events).encode()
    resp = client.post("/api/softphone/webhook/", content=body,
                       headers=signed_headers(SECRET, body))  # fmt: skip
    assert resp.status_code == 200, resp.text
    entries = session.scalars(select(DncEntry)).all()
    assert [(e.project_id, e.phone_number, e.source) for e in entries] == [
        (number.project_id, "+79160000001", "softphone"),
    ]
    audit = session.scalars(select(AuditLog).where(AuditLog.action == "dnc_opt_out")).one()
    assert audit.actor == "system:softphone"
    # The same event again (a retry) changes nothing.
    resp = client.post("/api/softphone/webhook/", content=body,
                       headers=signed_headers(SECRET, body))  # fmt: skip
    opt_outs = select(AuditLog).where(AuditLog.action == "dnc_opt_out")
    assert len(session.scalars(opt_outs).all()) == 1


def test_bulk_hostile_inputs_change_nothing(client, admin, factory, session) -> None:
    project = factory.project()
    too_many = {"project_id": project.id, "reason": "x", "numbers": ["+79160000001"] * 100_001}
    assert client.post(URL + "bulk/", json=too_many, headers=admin.headers).status_code == 400
    not_cp = "phone\n+79160000001\nтекст\n".encode("cp1251")  # declared UTF-8, is CP1251
    r = client.post(URL + "bulk/", content=not_cp, params={"project_id": project.id, "reason": "x"},
                    headers={**admin.headers, "content-type": "text/csv"})  # fmt: skip
    assert r.status_code == 400 and "file" in r.json(), r.text
    nested = "[" * 1000 + '"+79160000001"' + "]" * 1000
    r = client.post(URL + "bulk/", content='{"reason": "x", "numbers": ' + nested + "}",
                    headers={**admin.headers, "content-type": "application/json"})  # fmt: skip
    assert r.status_code == 400
    assert session.scalars(select(DncEntry)).all() == []


def test_softphone_opt_out_spelled_with_json_escapes_still_lists(client, factory, session) -> None:
    # The webhook skips the opt-out statement when a result cannot hold the flag; a key spelled
    # with \u escapes is still the flag once parsed, so it must not be skipped.
    project = factory.project()
    factory.number(project, "+79160000002")
    at = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)).isoformat()
    body = (
        '[{"event_id": "e-esc", "event_type": "call_result", "phone_number": "+79160000002", '
        f'"occurred_at": "{at}", "status": "failed", "project_id": {project.id}, '
        '"result_data": {"opt\\u005fout": true}}]'
    ).encode()
    resp = client.post("/api/softphone/webhook/", content=body,
                       headers=signed_headers(SECRET, body))  # fmt: skip
    assert resp.status_code == 200, resp.text
    entries = session.scalars(select(DncEntry)).all()
    assert [(e.project_id, e.phone_number) for e in entries] == [(project.id, "+79160000002")]
