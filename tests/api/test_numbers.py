"""/api/phone-numbers/: every filter, both pagination modes, counts, CRUD, transitions, scope."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from sqlalchemy import select, text

from api import number_count
from api.keyset import encode_cursor
from models.tables import AuditLog, PhoneNumber
from tests.api.conftest import Actor

URL = "/api/phone-numbers/"
T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def ids_of(resp) -> list[int]:  # type: ignore[no-untyped-def]
    assert resp.status_code == 200, resp.text
    return [r["id"] for r in resp.json()["results"]]


def all_ids(client, actor: Actor, **params) -> list[int]:  # type: ignore[no-untyped-def]
    return ids_of(client.get(URL, params={"page_size": 1000, **params}, headers=actor.headers))


@pytest.fixture
def world(factory, manager, other_manager):  # type: ignore[no-untyped-def]
    """Two projects of `manager`, one of `other_manager`, numbers with varied fields."""
    a = factory.project(members=[manager.user])
    b = factory.project(members=[manager.user])
    c = factory.project(members=[other_manager.user])
    p1, p2 = factory.provider(), factory.provider()
    g1 = factory.geo()
    statuses = ["new", "in_progress", "success", "failed", "no_answer"]
    rows = []
    for i in range(20):
        project = (a, b, c)[i % 3]
        rows.append(
            PhoneNumber(
                project_id=project.id,
                phone_number=f"+7916{i:07d}" if i % 2 else f"+7495{i:07d}",
                status=statuses[i % 5],
                provider_id=(p1.id, p2.id, None)[i % 3 == 0 and 2 or i % 2],
                geo_id=g1.id if i % 4 == 0 else None,
                call_attempts=i % 6,
                last_call_at=T0 + dt.timedelta(days=i) if i % 3 else None,
                created_at=T0 + dt.timedelta(hours=i),
            )
        )
    factory.session.add_all(rows)
    factory.session.commit()  # one commit, not twenty
    return {"a": a, "b": b, "c": c, "p1": p1, "p2": p2, "g1": g1, "rows": rows}


def test_every_filter_matches_python_predicate(client, admin, world) -> None:
    rows, a = world["rows"], world["a"]
    cases = [
        ({"project_id": a.id}, lambda r: r.project_id == a.id),
        ({"status": "failed"}, lambda r: r.status == "failed"),
        ({"status": ["new", "success"]}, lambda r: r.status in ("new", "success")),
        ({"status": "new,no_answer"}, lambda r: r.status in ("new", "no_answer")),
        ({"provider_id": world["p1"].id}, lambda r: r.provider_id == world["p1"].id),
        ({"geo_id": world["g1"].id}, lambda r: r.geo_id == world["g1"].id),
        ({"phone": "+7916"}, lambda r: r.phone_number.startswith("+7916")),
        ({"phone": "8 (495)"}, lambda r: r.phone_number.startswith("+7495")),
        ({"phone": "495"}, lambda r: r.phone_number.startswith("+7495")),
        ({"phone": "8 916 000-00-03"}, lambda r: r.phone_number == "+79160000003"),
        ({"created_after": "2024-01-01T05:00:00Z"}, lambda r: r.created_at >= T0.replace(hour=5)),
        ({"created_before": "2024-01-01T05:00:00"}, lambda r: r.created_at < T0.replace(hour=5)),
        ({"call_attempts_lt": 2}, lambda r: r.call_attempts < 2),
        ({"call_attempts_gte": 4}, lambda r: r.call_attempts >= 4),
        (
            {"last_call_after": (T0 + dt.timedelta(days=10)).isoformat()},
            lambda r: r.last_call_at is not None and r.last_call_at >= T0 + dt.timedelta(days=10),
        ),
        (
            {"last_call_before": (T0 + dt.timedelta(days=10)).isoformat()},
            lambda r: r.last_call_at is not None and r.last_call_at < T0 + dt.timedelta(days=10),
        ),
        (
            {"project_id": a.id, "status": ["new", "failed", "success"], "call_attempts_gte": 1},
            lambda r: (
                r.project_id == a.id
                and r.status in ("new", "failed", "success")
                and r.call_attempts >= 1
            ),
        ),
    ]
    for params, predicate in cases:
        expected = sorted(r.id for r in rows if predicate(r))
        assert expected, params  # every case selects something...
        assert len(expected) < len(rows), params  # ...and filters something out
        assert all_ids(client, admin, **params) == expected, params


def test_filter_validation_errors_are_400_with_field(client, admin) -> None:
    for params, field in [
        ({"status": "bogus"}, "status"),
        ({"phone": "abc"}, "phone"),
        ({"project_id": "x"}, "project_id"),
        ({"call_attempts_lt": -1}, "call_attempts_lt"),
        ({"created_after": "yesterday"}, "created_after"),
        ({"ordering": "phone_number"}, "ordering"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"page_size": 5000}, "page_size"),
    ]:
        resp = client.get(URL, params=params, headers=admin.headers)
        assert resp.status_code == 400, (params, resp.text)
        assert field in resp.json(), (params, resp.json())


def test_scope_on_list_and_single_routes(client, manager, other_manager, admin, world) -> None:
    mine = {r.id for r in world["rows"] if r.project_id in (world["a"].id, world["b"].id)}
    assert set(all_ids(client, manager)) == mine
    assert client.get(
        URL, params={"project_id": world["c"].id}, headers=manager.headers
    ).json() == {"detail": "Project not found."}
    theirs = next(r for r in world["rows"] if r.project_id == world["c"].id)
    for method, kwargs in [
        ("get", {}),
        ("patch", {"json": {"status": "in_progress"}}),
    ]:
        resp = getattr(client, method)(f"{URL}{theirs.id}/", headers=manager.headers, **kwargs)
        assert resp.status_code == 404, (method, resp.text)
    assert client.get(f"{URL}{theirs.id}/", headers=other_manager.headers).status_code == 200
    # Deleting is for admins; a manager is refused before anything is looked up.
    assert client.delete(f"{URL}{theirs.id}/", headers=manager.headers).status_code == 403
    assert client.get(f"{URL}999999/", headers=admin.headers).status_code == 404


def test_deleted_project_numbers_are_invisible(client, admin, factory, session) -> None:
    project = factory.project()
    number = factory.number(project)
    session.execute(
        text(
            "UPDATE projects SET is_deleted = true, deleted_at = now(), status = 'deleted' "
            "WHERE id = :id"
        ),
        {"id": project.id},
    )
    session.commit()
    assert all_ids(client, admin) == []
    assert client.get(f"{URL}{number.id}/", headers=admin.headers).status_code == 404
    assert client.delete(f"{URL}{number.id}/", headers=admin.headers).status_code == 404
    resp = client.get(URL, params={"project_id": project.id}, headers=admin.headers)
    assert resp.status_code == 404


def test_page_mode_count_links_and_orderings(client, admin, world) -> None:
    rows = world["rows"]
    resp = client.get(URL, params={"page_size": 7, "page": 2}, headers=admin.headers)
    body = resp.json()
    assert body["count"] == 20 and body["count_is_estimate"] is False
    assert "page=3" in body["next"] and "page=1" in body["previous"]
    assert [r["id"] for r in body["results"]] == sorted(r.id for r in rows)[7:14]
    last = client.get(URL, params={"page_size": 7, "page": 3}, headers=admin.headers).json()
    assert last["next"] is None and len(last["results"]) == 6

    assert all_ids(client, admin, ordering="-id") == sorted((r.id for r in rows), reverse=True)
    by_created = sorted(rows, key=lambda r: (r.created_at, r.id), reverse=True)
    assert all_ids(client, admin, ordering="-created_at") == [r.id for r in by_created]
    # NULLs last ascending (PostgreSQL's default), ids break ties.
    far = dt.datetime.max.replace(tzinfo=dt.UTC)
    by_call = sorted(rows, key=lambda r: (r.last_call_at or far, r.id))
    assert all_ids(client, admin, ordering="last_call_at") == [r.id for r in by_call]


def test_count_is_estimated_above_threshold(client, admin, factory, session, monkeypatch) -> None:
    project = factory.project()
    session.execute(
        text(
            "INSERT INTO phone_numbers (phone_number, project_id) "
            "SELECT '+7903' || lpad(g::text, 7, '0'), :p FROM generate_series(1, 3000) g"
        ),
        {"p": project.id},
    )
    session.commit()
    session.execute(text("ANALYZE phone_numbers"))
    session.commit()
    body = client.get(URL, params={"page_size": 1}, headers=admin.headers).json()
    assert body == body | {"count": 3000, "count_is_estimate": False}
    monkeypatch.setattr(number_count, "COUNT_EXACT_BELOW", 1000)
    body = client.get(URL, params={"page_size": 1}, headers=admin.headers).json()
    assert body["count_is_estimate"] is True and 2500 <= body["count"] <= 3500
    assert body["next"] is not None
    exact = client.get(URL, params={"page_size": 1, "exact_count": True}, headers=admin.headers)
    assert exact.json()["count"] == 3000 and exact.json()["count_is_estimate"] is False


def test_cursor_returns_each_row_once_under_concurrent_inserts(
    client, admin, world, factory, session
) -> None:
    fresh = itertools.count()
    for ordering in ("id", "-id", "created_at", "-last_call_at", "last_call_at"):
        original = set(session.scalars(select(PhoneNumber.id)).all())
        seen: list[int] = []
        params = {"pagination": "cursor", "page_size": 4, "ordering": ordering}
        pages = 0
        while True:
            body = client.get(URL, params=params, headers=admin.headers).json()
            assert body["count"] is None
            seen += [r["id"] for r in body["results"]]
            # Someone inserts between page fetches: early and late keys, NULLs, two projects.
            for project in (world["a"], world["c"]) if pages < 6 else ():
                n = next(fresh)
                factory.number(
                    project,
                    f"+7999{n:07d}",
                    created_at=T0 + dt.timedelta(hours=n % 2 * 100 - 50),
                    last_call_at=None if n % 2 else T0 + dt.timedelta(days=n % 40),
                )
            pages += 1
            if not body["next_cursor"]:
                break
            assert body["next"].endswith(f"cursor={body['next_cursor']}")
            params["cursor"] = body["next_cursor"]
            assert pages < 50
        assert len(seen) == len(set(seen)), ordering  # nothing twice
        assert original <= set(seen), ordering  # every row present at the start, once


def test_cursor_is_bound_to_its_ordering(client, admin, world) -> None:
    token = encode_cursor("id", world["rows"][5].id)
    resp = client.get(URL, params={"cursor": token, "page_size": 100}, headers=admin.headers)
    assert ids_of(resp) == sorted(r.id for r in world["rows"])[6:]
    resp = client.get(URL, params={"cursor": token, "ordering": "-id"}, headers=admin.headers)
    assert resp.status_code == 400 and "cursor" in resp.json()


def test_create_normalises_validates_and_conflicts(client, manager, world, session) -> None:
    a = world["a"]
    resp = client.post(
        URL,
        json={"phone_number": "8 (903) 555-12-34", "project_id": a.id, "attributes": {"n": "Ivan"}},
        headers=manager.headers,
    )
    assert resp.status_code == 201, resp.text
    created = resp.json()
    assert created["phone_number"] == "+79035551234" and created["status"] == "new"
    assert created["attributes"] == {"n": "Ivan"}
    again = client.post(
        URL, json={"phone_number": "+7 903 555 12 34", "project_id": a.id}, headers=manager.headers
    )
    assert again.status_code == 409 and str(created["id"]) in again.json()["detail"]
    # The same number in another project is fine.
    other = client.post(
        URL,
        json={"phone_number": "89035551234", "project_id": world["b"].id},
        headers=manager.headers,
    )
    assert other.status_code == 201
    bad = client.post(
        URL, json={"phone_number": "12ab", "project_id": a.id}, headers=manager.headers
    )
    assert bad.status_code == 400 and bad.json() == {
        "phone_number": ["Invalid phone number: contains letters."]
    }
    assert (
        client.post(
            URL,
            json={"phone_number": "+79035550000", "project_id": world["c"].id},
            headers=manager.headers,
        ).status_code
        == 404
    )
    resp = client.post(
        URL,
        json={"phone_number": "+79035550000", "project_id": a.id, "provider_id": 987654},
        headers=manager.headers,
    )
    assert resp.status_code == 400 and "provider_id" in resp.json()
    resp = client.post(URL, json={"project_id": a.id}, headers=manager.headers)
    assert resp.status_code == 400 and "phone_number" in resp.json()
    audits = session.scalars(
        select(AuditLog).where(AuditLog.entity_type == "phone_number").order_by(AuditLog.id)
    ).all()
    assert [(x.action, x.entity_id) for x in audits] == [
        ("create", created["id"]),
        ("create", other.json()["id"]),
    ]


def test_patch_transitions_refs_and_result_data(client, manager, admin, world, session) -> None:
    number = next(r for r in world["rows"] if r.project_id == world["a"].id and r.status == "new")
    url = f"{URL}{number.id}/"

    def patch(actor, **body):  # type: ignore[no-untyped-def]
        return client.patch(url, json=body, headers=actor.headers)

    resp = patch(manager, status="in_progress", result_data={"a": 1, "b": 2})
    assert resp.status_code == 200 and resp.json()["status"] == "in_progress"
    resp = patch(manager, result_data={"b": None, "c": 3})  # merge: null removes a key
    assert resp.json()["result_data"] == {"a": 1, "c": 3}
    resp = patch(manager, result_data={"z": 0}, result_data_mode="replace")
    assert resp.json()["result_data"] == {"z": 0}
    assert patch(manager, status="success").json()["status"] == "success"
    refused = patch(manager, status="new")
    assert refused.status_code == 400 and "final" in refused.json()["status"][0]
    assert patch(manager, status="new", force=True).status_code == 403
    assert patch(admin, status="new", force=True).json()["status"] == "new"
    resp = patch(manager, provider_id=world["p2"].id, geo_id=world["g1"].id)
    assert (resp.json()["provider_id"], resp.json()["geo_id"]) == (world["p2"].id, world["g1"].id)
    assert patch(manager, provider_id=None).json()["provider_id"] is None
    assert "geo_id" in patch(manager, geo_id=424242).json()
    assert "status" in patch(manager, status="done").json()
    assert "colour" in patch(manager, colour="red").json()
    changes = session.scalars(
        select(AuditLog.changes)
        .where(AuditLog.entity_type == "phone_number", AuditLog.entity_id == number.id)
        .order_by(AuditLog.id)
    ).all()
    assert changes[0]["status"] == ["new", "in_progress"]
    assert {"status": ["success", "new"], "forced": [False, True]}.items() <= changes[4].items()
    assert len(changes) == 7


def test_delete_is_admin_only_and_audited(client, admin, manager, world, session) -> None:
    number = world["rows"][0]
    assert client.delete(f"{URL}{number.id}/", headers=manager.headers).status_code == 403
    assert client.delete(f"{URL}{number.id}/", headers=admin.headers).status_code == 204
    assert session.get(PhoneNumber, number.id, populate_existing=True) is None
    row = session.scalars(select(AuditLog).where(AuditLog.action == "delete")).one()
    assert row.entity_id == number.id and row.changes["phone_number"][0] == number.phone_number
    assert client.delete(f"{URL}{number.id}/", headers=admin.headers).status_code == 404
