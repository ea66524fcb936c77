"""Providers and geo through HTTP: admins write, managers read, filters, validation, audit."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.api.util import audit_rows, only_audit, table_state

PROVIDERS = "/api/providers/"
GEO = "/api/geo/"


def test_provider_crud_by_admin_with_audit(client: TestClient, admin, db) -> None:
    body = {"code": "leadco", "name": "LeadCo", "type": "api", "contact_info": {"tel": "+7"}}
    resp = client.post(PROVIDERS, json=body, headers=admin.headers)
    assert resp.status_code == 201, resp.text
    created = resp.json()
    assert created["status"] == "active" and created["contact_info"] == {"tel": "+7"}
    row = only_audit(db)
    assert (row.action, row.entity_type, row.entity_id) == ("create", "provider", created["id"])
    url = f"{PROVIDERS}{created['id']}/"
    assert client.get(url, headers=admin.headers).json() == created
    resp = client.patch(url, json={"status": "inactive"}, headers=admin.headers)
    assert resp.status_code == 200 and resp.json()["status"] == "inactive"
    assert audit_rows(db)[-1].changes == {"status": ["active", "inactive"]}
    resp = client.put(url, json={"name": "LeadCo 2", "status": "active"}, headers=admin.headers)
    assert resp.status_code == 200
    assert resp.json()["type"] is None and resp.json()["contact_info"] is None
    assert client.delete(url, headers=admin.headers).status_code == 204
    last = audit_rows(db)[-1]
    assert last.action == "delete" and last.changes["code"] == ["leadco", None]
    assert client.get(url, headers=admin.headers).status_code == 404
    assert len(audit_rows(db)) == 4


def test_provider_validation_and_duplicates(client, admin, factory, db) -> None:
    factory.provider(code="dup")
    for body, field in (
        ({"name": "X"}, "code"),
        ({"code": "UPPER", "name": "X"}, "code"),
        ({"code": "ok"}, "name"),
        ({"code": "ok", "name": "X", "status": "gone"}, "status"),
        ({"code": "ok", "name": "X", "contact_info": [1]}, "contact_info"),
        ({"code": "ok", "name": "X", "contact_info": {"a": "\x00"}}, "contact_info"),
        ({"code": "ok", "name": "X", "type": ""}, "type"),
    ):
        resp = client.post(PROVIDERS, json=body, headers=admin.headers)
        assert resp.status_code == 400 and field in resp.json(), (body, resp.text)
    before = table_state(db, "providers")
    resp = client.post(PROVIDERS, json={"code": "dup", "name": "X"}, headers=admin.headers)
    assert resp.status_code == 409
    assert table_state(db, "providers") == before and audit_rows(db) == []


def test_provider_in_use_is_not_deleted(client, admin, factory, db) -> None:
    provider = factory.provider()
    project = factory.project()
    factory.number(project, provider_id=provider.id)
    before = table_state(db, "providers", "phone_numbers")
    resp = client.delete(f"{PROVIDERS}{provider.id}/", headers=admin.headers)
    assert resp.status_code == 409 and "inactive" in resp.json()["detail"]
    assert table_state(db, "providers", "phone_numbers") == before and audit_rows(db) == []


def test_provider_filters(client, manager, factory) -> None:
    factory.provider(code="a1", name="Alpha", type="sftp")
    factory.provider(code="b1", name="Beta", type="api", status="inactive")
    h = manager.headers

    def codes(**params) -> list[str]:
        resp = client.get(PROVIDERS, params=params, headers=h)
        assert resp.status_code == 200, resp.text
        return [p["code"] for p in resp.json()["results"]]

    assert codes(ordering="-code") == ["b1", "a1"]
    assert codes(status="inactive") == ["b1"]
    assert codes(type="sftp") == ["a1"]
    assert codes(search="alp") == ["a1"]
    assert client.get(PROVIDERS, params={"status": "x"}, headers=h).status_code == 400


def test_geo_crud_and_validation(client, admin, db) -> None:
    body = {"country_code": "RU", "region": "Moscow", "city": "Moscow", "timezone": "Europe/Moscow"}
    resp = client.post(GEO, json=body, headers=admin.headers)
    assert resp.status_code == 201, resp.text
    geo = resp.json()
    assert only_audit(db).changes["timezone"] == [None, "Europe/Moscow"]
    url = f"{GEO}{geo['id']}/"
    resp = client.patch(url, json={"timezone": "Asia/Yekaterinburg"}, headers=admin.headers)
    assert resp.status_code == 200 and resp.json()["timezone"] == "Asia/Yekaterinburg"
    resp = client.put(url, json={"country_code": "KZ"}, headers=admin.headers)
    assert resp.status_code == 200 and resp.json()["city"] is None
    for bad, field in (
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"timezone": "europe/moscow"}, "timezone"),
        ({"country_code": "ru"}, "country_code"),
        ({"country_code": "XX"}, "country_code"),
        ({"country_code": "RUS"}, "country_code"),
        ({"city": ""}, "city"),
        ({"lat": 1}, "lat"),
    ):
        for method, target in (("POST", GEO), ("PATCH", url)):
            resp = client.request(method, target, json=bad, headers=admin.headers)
            assert resp.status_code == 400 and field in resp.json(), (method, bad, resp.text)
    n = len(audit_rows(db))
    assert client.delete(url, headers=admin.headers).status_code == 204
    assert len(audit_rows(db)) == n + 1 and audit_rows(db)[-1].action == "delete"


def test_geo_filters(client, manager, factory) -> None:
    factory.geo(country_code="RU", region="Moscow", city="Moscow", timezone="Europe/Moscow")
    factory.geo(
        country_code="RU", region="Sverdlovsk", city="Ekaterinburg", timezone="Asia/Yekaterinburg"
    )
    factory.geo(country_code="KZ", region="Almaty", city="Almaty", timezone="Asia/Almaty")
    h = manager.headers

    def cities(**params) -> list[str]:
        resp = client.get(GEO, params={"ordering": "city", **params}, headers=h)
        assert resp.status_code == 200, resp.text
        return [g["city"] for g in resp.json()["results"]]

    assert cities(country_code="ru") == ["Ekaterinburg", "Moscow"]
    assert cities(region="sverdlovsk") == ["Ekaterinburg"]
    assert cities(city="ALMATY") == ["Almaty"]
    assert cities(timezone="Europe/Moscow") == ["Moscow"]
    assert cities(search="burg") == ["Ekaterinburg"]
    resp = client.get(GEO, params={"country_code": "R1"}, headers=h)
    assert resp.status_code == 400 and "country_code" in resp.json()


def test_geo_in_use_is_not_deleted(client, admin, factory, db) -> None:
    geo = factory.geo()
    project = factory.project()
    client.post(f"/api/projects/{project.id}/geo/", json={"geo_id": geo.id}, headers=admin.headers)
    n = len(audit_rows(db))
    assert client.delete(f"{GEO}{geo.id}/", headers=admin.headers).status_code == 409
    assert len(audit_rows(db)) == n


@pytest.mark.parametrize("base", [PROVIDERS, GEO])
def test_managers_read_but_cannot_write(client, manager, admin, factory, base, db) -> None:
    obj = factory.provider() if base == PROVIDERS else factory.geo()
    url = f"{base}{obj.id}/"
    assert client.get(base, headers=manager.headers).status_code == 200
    assert client.get(url, headers=manager.headers).status_code == 200
    body = {"code": "zz", "name": "Z"} if base == PROVIDERS else {"country_code": "RU"}
    for method, target, payload in (
        ("POST", base, body),
        ("PUT", url, {"name": "Z", "status": "active"} if base == PROVIDERS else {}),
        ("PATCH", url, {}),
        ("DELETE", url, None),
    ):
        resp = client.request(method, target, json=payload, headers=manager.headers)
        assert resp.status_code == 403, (method, target)
        assert client.request(method, target, json=payload).status_code == 401
    assert client.get(base).status_code == 401 and client.get(url).status_code == 401
    assert audit_rows(db) == []
    assert client.get(f"{base}987654/", headers=admin.headers).status_code == 404
