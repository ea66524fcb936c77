"""/api/phone-numbers/ bulk paths: JSON and CSV loads, bulk-update (scope, dry run, transitions,
moves) and the streaming CSV export."""

from __future__ import annotations

import csv
import io

from sqlalchemy import func, select

from models.tables import AuditLog, PhoneNumber

URL = "/api/phone-numbers/"


def numbers_of(session, project_id: int) -> dict[str, PhoneNumber]:  # type: ignore[no-untyped-def]
    session.expire_all()
    rows = session.scalars(select(PhoneNumber).where(PhoneNumber.project_id == project_id)).all()
    return {r.phone_number: r for r in rows}


def test_bulk_json_counts_rejects_and_attributes(client, manager, factory, session) -> None:
    project = factory.project(members=[manager.user])
    provider = factory.provider()
    factory.number(project, "+79160000001")  # already present
    numbers = [
        "8 916 000-00-01",  # line 1: already in the project
        {"phone_number": "+7 916 000 00 02", "attributes": {"name": "Anna"}},  # 2: new
        "89160000002",  # 3: duplicate of line 2
        "abc",  # 4: invalid
        {"phone_number": 79160000003},  # 5: new, given as a number
        "",  # 6: invalid (empty)
        "+7916000000",  # 7: invalid (too few digits)
    ]
    resp = client.post(
        f"{URL}bulk/",
        json={"project_id": project.id, "provider_id": provider.id, "numbers": numbers},
        headers=manager.headers,
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    counts = {k: body[k] for k in ("read", "inserted", "duplicate_in_input", "already_present")}
    assert counts == {"read": 7, "inserted": 2, "duplicate_in_input": 1, "already_present": 1}
    assert body["invalid"] == 3
    assert [(r["line"], r["raw"], r["reason"]) for r in body["rejects"]] == [
        (4, "abc", "contains letters"),
        (6, "", "empty"),
        (7, "+7916000000", "too few digits"),
    ]
    stored = numbers_of(session, project.id)
    assert set(stored) == {"+79160000001", "+79160000002", "+79160000003"}
    assert stored["+79160000002"].attributes == {"name": "Anna"}
    assert stored["+79160000002"].provider_id == provider.id
    audit = session.scalars(select(AuditLog).where(AuditLog.action == "bulk_create")).one()
    assert audit.entity_id == project.id and audit.changes["inserted"] == 2


def test_bulk_json_validation_and_scope(client, manager, other_manager, factory) -> None:
    mine = factory.project(members=[manager.user])
    theirs = factory.project(members=[other_manager.user])
    post = lambda body: client.post(f"{URL}bulk/", json=body, headers=manager.headers)  # noqa: E731
    assert post({"project_id": theirs.id, "numbers": ["+79160000001"]}).status_code == 404
    resp = post({"project_id": mine.id, "numbers": []})
    assert resp.status_code == 400 and "numbers" in resp.json()
    resp = post({"project_id": mine.id, "numbers": ["1"] * 100_001})
    assert resp.status_code == 400 and "numbers" in resp.json()
    resp = post({"project_id": mine.id, "numbers": ["+79160000001"], "geo_id": 99999})
    assert resp.status_code == 400 and "geo_id" in resp.json()
    resp = post({"project_id": mine.id, "numbers": ["+79160000001"], "region": "QQ"})
    assert resp.status_code == 400 and "region" in resp.json()
    resp = client.post(f"{URL}bulk/", content=b"{oops", headers=manager.headers)
    assert resp.status_code == 400


def test_bulk_csv_upload(client, manager, factory, session) -> None:
    project = factory.project(members=[manager.user])
    factory.number(project, "+79160000001")
    text = (
        "\ufeffName;Телефон;Comment\n"  # BOM, semicolons, a Russian phone header
        "Anna;8 916 000-00-01;old\n"  # line 2: already present
        "Boris;+7 (916) 000-00-02;\n"  # line 3: new
        '"Multi\nline";89160000003;x\n'  # lines 4-5: new, a quoted newline
        "\n"  # line 6: blank, skipped
        "Dup;9160000002;again\n"  # line 7: duplicate of line 3
        "Bad;12-34;\n"  # line 8: invalid
        "Extra;+79160000004;c;surplus\n"  # line 9: new, a cell beyond the header
    )
    resp = client.post(
        f"{URL}bulk/",
        data={"project_id": str(project.id)},
        files={"file": ("leads.csv", text.encode(), "text/csv")},
        headers=manager.headers,
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert {k: body[k] for k in ("read", "inserted", "duplicate_in_input", "already_present")} == {
        "read": 6,
        "inserted": 3,
        "duplicate_in_input": 1,
        "already_present": 1,
    }
    assert body["invalid"] == 1 and body["rejects"] == [
        {"line": 8, "raw": "12-34", "reason": "too few digits"}
    ]
    stored = numbers_of(session, project.id)
    assert stored["+79160000002"].attributes == {"Name": "Boris"}
    assert stored["+79160000003"].attributes == {"Name": "Multi\nline", "Comment": "x"}
    assert stored["+79160000004"].attributes == {
        "Name": "Extra",
        "Comment": "c",
        "column_4": "surplus",
    }

    cp1251 = "phone,name\n89160000005,Иван\n".encode("cp1251")
    resp = client.post(
        f"{URL}bulk/",
        data={"project_id": str(project.id), "encoding": "cp1251"},
        files={"file": ("l.csv", cp1251, "text/csv")},
        headers=manager.headers,
    )
    assert resp.json()["inserted"] == 1
    assert numbers_of(session, project.id)["+79160000005"].attributes == {"name": "Иван"}


def test_bulk_csv_errors_are_400_and_change_nothing(client, manager, factory, session) -> None:
    project = factory.project(members=[manager.user])

    def upload(content: bytes, **data: str):  # type: ignore[no-untyped-def]
        return client.post(
            f"{URL}bulk/",
            data={"project_id": str(project.id), **data},
            files={"file": ("f.csv", content, "text/csv")},
            headers=manager.headers,
        )

    resp = upload(b"name,comment\nAnna,x\n")
    assert resp.status_code == 400 and "no phone column" in resp.json()["file"][0]
    assert "file" in upload(b"").json()
    # A decoding error deep in the file rolls the whole load back.
    resp = upload(b"phone\n" + b"89160000001\n" * 10 + b"\xff\xfe\n")
    assert resp.status_code == 400 and "encoding" in resp.json()["file"][0]
    assert "encoding" in upload(b"phone\n1\n", encoding="klingon").json()
    resp = client.post(f"{URL}bulk/", data={"project_id": "x"}, headers=manager.headers)
    assert resp.status_code == 400 and "project_id" in resp.json()
    assert numbers_of(session, project.id) == {}


def _statuses(session, project_id: int) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {p: n.status for p, n in numbers_of(session, project_id).items()}


def test_bulk_update_by_filter_respects_scope_and_dry_run(
    client, manager, other_manager, factory, session
) -> None:
    mine = factory.project(members=[manager.user])
    theirs = factory.project(members=[other_manager.user])
    for i in range(6):
        factory.number(mine, f"+7916000000{i}", status="success" if i == 5 else "new")
        factory.number(theirs, f"+7916000000{i}", status="new")
    before_mine, before_theirs = _statuses(session, mine.id), _statuses(session, theirs.id)
    body = {"filter": {"status": ["new", "success"]}, "set": {"status": "in_progress"}}

    dry = client.post(
        f"{URL}bulk-update/", json=body | {"dry_run": True}, headers=manager.headers
    ).json()
    assert dry == {"dry_run": True, "matched": 6, "updated": 5}  # success is final
    assert _statuses(session, mine.id) == before_mine  # a dry run changes nothing
    assert (
        session.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action != "login"))
        == 0
    )

    resp = client.post(f"{URL}bulk-update/", json=body, headers=manager.headers)
    assert resp.json() == {"dry_run": False, "matched": 6, "updated": 5}
    after = _statuses(session, mine.id)
    assert after == {p: ("success" if p.endswith("5") else "in_progress") for p in before_mine}
    assert _statuses(session, theirs.id) == before_theirs  # other projects untouched
    audit = session.scalars(select(AuditLog).where(AuditLog.action == "bulk_update")).one()
    assert audit.changes["filter"] == {"status": ["new", "success"]}
    assert (audit.changes["matched"], audit.changes["updated"]) == (6, 5)

    # Out of scope: a project filter, a target project, ids of other projects.
    scoped = {"filter": {"project_id": theirs.id}, "set": {"status": "failed"}}
    assert (
        client.post(f"{URL}bulk-update/", json=scoped, headers=manager.headers).status_code == 404
    )
    move = {"filter": {"project_id": mine.id}, "set": {"project_id": theirs.id}}
    assert client.post(f"{URL}bulk-update/", json=move, headers=manager.headers).status_code == 404
    their_ids = [n.id for n in numbers_of(session, theirs.id).values()]
    resp = client.post(
        f"{URL}bulk-update/",
        json={"ids": their_ids, "set": {"status": "failed"}},
        headers=manager.headers,
    )
    assert resp.json() == {"dry_run": False, "matched": 0, "updated": 0}
    assert _statuses(session, theirs.id) == before_theirs


def test_bulk_update_ids_refs_moves_and_validation(client, admin, factory, session) -> None:
    a, b = factory.project(), factory.project()
    provider = factory.provider()
    for i in range(4):
        factory.number(a, f"+7903000000{i}")
    factory.number(b, "+79030000000")  # already in b: that row of a stays in a
    ids = [n.id for n in numbers_of(session, a.id).values()]
    post = lambda body: client.post(f"{URL}bulk-update/", json=body, headers=admin.headers)  # noqa: E731
    assert post({"ids": ids, "set": {"provider_id": provider.id}}).json()["updated"] == 4
    assert post({"ids": ids, "set": {"provider_id": provider.id}}).json()["updated"] == 0
    assert {n.provider_id for n in numbers_of(session, a.id).values()} == {provider.id}
    moved = post({"filter": {"project_id": a.id}, "set": {"project_id": b.id}}).json()
    assert moved == {"dry_run": False, "matched": 4, "updated": 3}
    assert set(numbers_of(session, a.id)) == {"+79030000000"}
    assert len(numbers_of(session, b.id)) == 4
    # Validation: 400 with the field.
    for body, field in [
        ({"set": {"status": "new"}}, "non_field_errors"),
        ({"ids": [1], "filter": {"status": "new"}, "set": {"status": "new"}}, "non_field_errors"),
        ({"filter": {}, "set": {"status": "new"}}, "filter"),
        ({"filter": {"status": "nope"}, "set": {"status": "new"}}, "filter.status"),
        ({"filter": {"colour": "red"}, "set": {"status": "new"}}, "filter.non_field_errors"),
        ({"ids": [1], "set": {}}, "set"),
        ({"ids": [1], "set": {"status": "done"}}, "set.status"),
        ({"ids": [1], "set": {"geo_id": 4242}}, "set.geo_id"),
        ({"ids": [1], "set": {"status": "new"}, "oops": 1}, "oops"),
    ]:
        resp = post(body)
        assert resp.status_code == 400, (body, resp.text)
        assert field in resp.json(), (body, resp.json())


def test_export_of_a_filtered_set_equals_the_list(
    client, manager, other_manager, factory, session
) -> None:
    mine = factory.project(members=[manager.user])
    theirs = factory.project(members=[other_manager.user])
    for i in range(30):
        factory.number(mine, f"+7916{i:07d}", status=("new", "failed")[i % 2], call_attempts=i % 4)
        factory.number(theirs, f"+7916{i:07d}", status="new")
    params = {"status": "new", "call_attempts_gte": 1}
    listed = client.get(URL, params=params | {"page_size": 1000}, headers=manager.headers).json()
    resp = client.get(f"{URL}export.csv", params=params, headers=manager.headers)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv")
    assert "attachment" in resp.headers["content-disposition"]
    exported = list(csv.DictReader(io.StringIO(resp.text)))
    assert [(int(r["id"]), r["phone_number"], r["status"]) for r in exported] == [
        (r["id"], r["phone_number"], r["status"]) for r in listed["results"]
    ]
    assert len(exported) == listed["count"] == 7
    denied = client.get(
        f"{URL}export.csv", params={"project_id": theirs.id}, headers=manager.headers
    )
    assert denied.status_code == 404
    bad = client.get(f"{URL}export.csv", params={"status": "zzz"}, headers=manager.headers)
    assert bad.status_code == 400 and "status" in bad.json()
    assert session.scalars(select(AuditLog.action).where(AuditLog.action != "login")).all() == [
        "export"
    ]
