"""callable_now on the numbers list and export, the callable summary, the holiday calendar API
and the pop-up's dialing facts, over HTTP. The clock is real here (fixed-clock cases are in
tests/dialing/), so these check what holds at any moment."""

from __future__ import annotations

import datetime as dt
from urllib.parse import quote

from sqlalchemy import select

from models.tables import AuditLog, DncEntry

URL = "/api/phone-numbers/"


def _world(factory, manager):  # type: ignore[no-untyped-def]
    project = factory.project(members=[manager.user])
    n = {
        "msk": factory.number(project, "+79160000001", timezone="Europe/Moscow",
                              timezone_source="registry", region="Москва"),
        "unknown": factory.number(project, "+79990000001", timezone_source="unknown"),
        "dnc": factory.number(project, "+79160000002", timezone="Europe/Moscow",
                              timezone_source="registry"),
    }  # fmt: skip
    factory.session.add(DncEntry(project_id=project.id, phone_number="+79160000002", reason="x"))
    factory.session.commit()
    return project, n


def test_callable_now_filter_partitions_and_never_lists_unknown_or_dnc(
    client, manager, factory
) -> None:
    project, n = _world(factory, manager)

    def ids(value: str) -> set[int]:
        resp = client.get(
            URL, params={"project_id": project.id, "callable_now": value}, headers=manager.headers
        )
        assert resp.status_code == 200, resp.text
        return {r["id"] for r in resp.json()["results"]}

    yes, no = ids("true"), ids("false")
    assert yes | no == {x.id for x in n.values()} and not yes & no
    assert n["unknown"].id in no and n["dnc"].id in no
    bad = client.get(URL, params={"callable_now": "sometimes"}, headers=manager.headers)
    assert bad.status_code == 400 and "callable_now" in bad.json()
    export = client.get(
        URL + "export.csv", params={"project_id": project.id, "callable_now": "false"},
        headers=manager.headers,
    )  # fmt: skip
    assert export.status_code == 200, export.text  # the CSV export shares the filters
    assert "+79990000001" in export.text


def test_callable_summary_and_scope(client, manager, other_manager, factory) -> None:
    project, _ = _world(factory, manager)
    resp = client.get(f"/api/projects/{project.id}/callable/", headers=manager.headers)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["total"], body["dnc"]) == (3, 1)
    zones = {z["timezone"]: z for z in body["zones"]}
    assert zones["Europe/Moscow"]["numbers"] == 1
    assert zones[None]["reason"] == "unknown_timezone"
    msk = zones["Europe/Moscow"]
    assert msk["callable_now"] == (msk["reason"] is None)
    assert msk["next_window_opens"] is not None
    assert body["callable_now"] == (1 if msk["callable_now"] else 0)
    denied = client.get(f"/api/projects/{project.id}/callable/", headers=other_manager.headers)
    assert denied.status_code == 404
    assert client.get("/api/projects/999999/callable/", headers=manager.headers).status_code == 404
    assert client.get("/api/projects/0/callable/", headers=manager.headers).status_code == 400


def test_holiday_calendar_admin_only_and_audited(client, admin, manager, session) -> None:
    body = {"day": "2031-01-07", "name": "Рождество"}
    assert client.post("/api/holidays/", json=body, headers=manager.headers).status_code == 403
    created = client.post("/api/holidays/", json=body, headers=admin.headers)
    assert created.status_code == 201, created.text
    assert client.post("/api/holidays/", json=body, headers=admin.headers).status_code == 409
    listed = client.get("/api/holidays/", params={"year": 2031}, headers=manager.headers).json()
    assert [h["day"] for h in listed] == ["2031-01-07"]
    for bad in ({"day": "2031-02-30", "name": "x"}, {"day": "2031-01-08", "name": ""},
                {"day": "2031-01-08", "name": "x", "extra": 1},
                {"day": "2031-01-08", "name": "a\u0000b"}):  # fmt: skip
        resp = client.post("/api/holidays/", json=bad, headers=admin.headers)
        assert resp.status_code == 400, (bad, resp.text)
    put = client.put(
        "/api/holidays/2031-01-07/",
        json={"day": "2031-01-07", "name": "Рождество", "is_working_day": True},
        headers=admin.headers,
    )
    assert put.status_code == 200 and put.json()["is_working_day"] is True
    assert client.delete("/api/holidays/2031-01-07/", headers=manager.headers).status_code == 403
    assert client.delete("/api/holidays/2031-01-07/", headers=admin.headers).status_code == 204
    assert client.delete("/api/holidays/2031-01-07/", headers=admin.headers).status_code == 404
    actions = session.scalars(
        select(AuditLog.action).where(AuditLog.entity_type == "holiday").order_by(AuditLog.id)
    ).all()
    assert actions == ["create", "update", "delete"]


def test_popup_says_whether_callable_and_flags_dnc(client, admin, factory) -> None:
    project, _ = _world(factory, admin)
    card = client.get("/api/softphone/number/" + quote("+79160000002") + "/", headers=admin.headers)
    assert card.status_code == 200, card.text
    dialing = card.json()["results"][0]["dialing"]
    assert dialing["dnc"] is True and dialing["callable_now"] is False
    assert dialing["reason"] == "dnc" and dialing["next_window_opens"] is None
    msk = client.get("/api/softphone/number/" + quote("+79160000001") + "/", headers=admin.headers)
    d = msk.json()["results"][0]["dialing"]
    assert (d["timezone"], d["timezone_source"], d["region"], d["dnc"]) == (
        "Europe/Moscow", "registry", "Москва", False,
    )  # fmt: skip
    local = dt.datetime.fromisoformat(d["local_time"])
    assert local.utcoffset() == dt.timedelta(hours=3)
    assert d["callable_now"] == (d["reason"] is None)
    if not d["callable_now"]:
        assert d["reason"] == "outside_legal_hours" and d["next_window_opens"]
