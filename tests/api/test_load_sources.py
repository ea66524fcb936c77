"""API loads are recorded: the number shows its load, filters by it, the pop-up names it; the
project's dedupe scope is set through PATCH (audited), and a manager learns no more than
"already in another project"."""

from __future__ import annotations

from urllib.parse import quote

from sqlalchemy import select

from models.tables import NumberLoad, PhoneNumber
from tests.api.util import audit_rows, table_state

URL = "/api/phone-numbers/"


def _bulk(client, actor, project_id: int, numbers: list[object]):  # type: ignore[no-untyped-def]
    return client.post(
        f"{URL}bulk/", json={"project_id": project_id, "numbers": numbers}, headers=actor.headers
    )


def test_bulk_load_is_recorded_and_numbers_point_at_it(client, manager, factory, session) -> None:
    project = factory.project(members=[manager.user])
    first = _bulk(client, manager, project.id, ["+79160000001", "+79160000002", "x"])
    assert first.status_code == 200, first.text
    load_id = first.json()["load_id"]
    again = _bulk(client, manager, project.id, ["8 916 000-00-01", "+79160000003"]).json()
    assert again["already_present"] == 1 and again["load_id"] != load_id
    load = session.get(NumberLoad, load_id)
    assert load is not None
    assert (load.kind, load.source, load.created_by, load.project_id) == (
        "api", "json", manager.user.id, project.id,
    )  # fmt: skip
    assert (load.rows_read, load.inserted, load.invalid) == (3, 2, 1)
    # The re-sent number keeps its first load.
    page = client.get(URL, params={"phone": "+79160000001"}, headers=manager.headers).json()
    assert [r["source_load_id"] for r in page["results"]] == [load_id]
    by_load = client.get(URL, params={"source_load_id": load_id}, headers=manager.headers).json()
    assert sorted(r["phone_number"] for r in by_load["results"]) == [
        "+79160000001", "+79160000002",
    ]  # fmt: skip
    bad = client.get(URL, params={"source_load_id": "0"}, headers=manager.headers)
    assert bad.status_code == 400 and "source_load_id" in bad.text
    card = client.get(
        f"/api/softphone/number/{quote('+79160000001')}/", headers=manager.headers
    ).json()["results"][0]
    assert card["source_load"]["id"] == load_id and card["source_load"]["kind"] == "api"


def test_source_load_filter_stays_in_scope(client, manager, other_manager, factory) -> None:
    theirs = factory.project(members=[other_manager.user])
    factory.project(members=[manager.user])
    load_id = _bulk(client, other_manager, theirs.id, ["+79160000001"]).json()["load_id"]
    page = client.get(URL, params={"source_load_id": load_id}, headers=manager.headers)
    assert page.status_code == 200 and page.json()["results"] == []


def test_dedupe_scope_is_patched_audited_and_validated(client, manager, factory, db) -> None:
    project = factory.project(members=[manager.user])
    url = f"/api/projects/{project.id}/"
    resp = client.patch(
        url, json={"dedupe_scope": "all_projects", "dedupe_window_days": 30},
        headers=manager.headers,
    )  # fmt: skip
    assert resp.status_code == 200, resp.text
    assert (resp.json()["dedupe_scope"], resp.json()["dedupe_window_days"]) == ("all_projects", 30)
    audit = [a for a in audit_rows(db, entity_type="project") if a.action == "update"]
    assert audit[-1].changes["dedupe_scope"] == ["project", "all_projects"]
    assert audit[-1].changes["dedupe_window_days"] == [None, 30]
    before = table_state(db, "projects", "audit_log")
    for body, field in (
        ({"dedupe_scope": "system"}, "dedupe_scope"),
        ({"dedupe_scope": None}, "dedupe_scope"),
        ({"dedupe_window_days": 0}, "dedupe_window_days"),
        ({"dedupe_window_days": 3651}, "dedupe_window_days"),
        ({"dedupe_window_days": "7"}, "dedupe_window_days"),
        ({"dedupe_window_days": True}, "dedupe_window_days"),
    ):
        bad = client.patch(url, json=body, headers=manager.headers)
        assert bad.status_code == 400, (body, bad.text)
        assert field in bad.json(), bad.text
    assert table_state(db, "projects", "audit_log") == before
    cleared = client.patch(url, json={"dedupe_window_days": None}, headers=manager.headers)
    assert cleared.json()["dedupe_window_days"] is None


def test_manager_cannot_set_another_projects_scope(client, manager, other_manager, factory) -> None:
    theirs = factory.project(members=[other_manager.user])
    resp = client.patch(
        f"/api/projects/{theirs.id}/", json={"dedupe_scope": "all_projects"},
        headers=manager.headers,
    )  # fmt: skip
    assert resp.status_code == 404


def test_manager_learns_only_already_in_another_project(
    client, manager, other_manager, factory, session
) -> None:
    theirs = factory.project(code="secret-campaign", members=[other_manager.user])
    factory.number(theirs, "+79160000001")
    mine = factory.project(members=[manager.user], dedupe_scope="all_projects")
    resp = _bulk(client, manager, mine.id, ["+79160000002", "8 916 000 00 01"])
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["inserted"], body["duplicate_elsewhere"], body["already_present"]) == (1, 1, 0)
    assert body["rejects"] == [
        {"line": 2, "raw": "+79160000001", "reason": "already in another project"}
    ]
    assert "secret-campaign" not in resp.text and f'"{theirs.id}"' not in resp.text
    session.expire_all()
    assert session.scalars(
        select(PhoneNumber.project_id).where(PhoneNumber.phone_number == "+79160000001")
    ).all() == [theirs.id]  # fmt: skip
    # The audit row a manager's project history shows has counts, no project code either.
    audit = [a for a in audit_rows(session.get_bind(), action="bulk_create")][-1]
    assert audit.changes["duplicate_elsewhere"] == 1 and "secret-campaign" not in str(audit.changes)


def test_popup_hides_the_load_of_a_number_moved_from_another_project(
    client, manager, other_manager, factory, db
) -> None:
    mine = factory.project(members=[manager.user])
    theirs = factory.project(code="secret-origin", members=[other_manager.user])
    _bulk(client, other_manager, theirs.id, ["+79160000001"])
    resp = client.post(
        f"{URL}bulk-update/",
        json={"filter": {"phone": "+79160000001"}, "set": {"project_id": mine.id}},
        headers=other_manager.headers,
    )
    if resp.status_code != 200:  # moving needs the destination in scope: do it as the database
        with db.begin() as conn:
            conn.exec_driver_sql(
                "UPDATE phone_numbers SET project_id = %s WHERE phone_number = '+79160000001'",
                (mine.id,),
            )
    card = client.get(
        f"/api/softphone/number/{quote('+79160000001')}/", headers=manager.headers
    ).json()["results"][0]
    assert card["project"]["id"] == mine.id and card["source_load"] is None
    assert "secret-origin" not in str(card)
