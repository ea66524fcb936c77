"""Dialing fields on /api/phone-numbers/: resolved on single and bulk create, exposed on the
number, filterable by timezone, region and timezone_source (bad values: 400 naming the field)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from models.dialing.registry import load_registry
from tests.dialing.conftest import ABC_CP1251, DEF_UTF8

URL = "/api/phone-numbers/"


@pytest.fixture
def registry(db: Any, database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        load_registry(conn, [DEF_UTF8, ABC_CP1251])


def test_single_and_bulk_create_resolve_and_expose_dialing_fields(
    client, manager, factory, registry
) -> None:
    project = factory.project(members=[manager.user])
    one = client.post(
        URL, json={"phone_number": "8 916 234-56-78", "project_id": project.id},
        headers=manager.headers,
    )  # fmt: skip
    assert one.status_code == 201, one.text
    body = one.json()
    assert (body["timezone"], body["timezone_source"], body["region"]) == (
        "Europe/Moscow", "registry", "Москва и Московская область",
    )  # fmt: skip
    assert body["operator"] == 'ПАО "Мобильные ТелеСистемы"'
    bulk = client.post(
        URL + "bulk/",
        json={"project_id": project.id, "numbers": ["+79142712345", "+13125551234"]},
        headers=manager.headers,
    )
    assert bulk.status_code in (200, 201), bulk.text
    got = client.get(URL, params={"project_id": project.id}, headers=manager.headers).json()
    by_phone = {r["phone_number"]: r for r in got["results"]}
    assert by_phone["+79142712345"]["timezone_source"] == "ambiguous"
    assert by_phone["+79142712345"]["timezone"] is None
    assert by_phone["+13125551234"]["timezone"] == "America/Chicago"
    again = client.get(URL + f"{one.json()['id']}/", headers=manager.headers).json()
    assert again["region"] == "Москва и Московская область"


def test_dialing_filters(client, manager, factory, registry) -> None:
    project = factory.project(members=[manager.user])
    client.post(
        URL + "bulk/",
        json={"project_id": project.id,
              "numbers": ["+79162345678", "+79142712345", "+13125551234", "+79130999000"]},
        headers=manager.headers,
    )  # fmt: skip

    def phones(**params: str) -> set[str]:
        resp = client.get(URL, params={"project_id": project.id, **params}, headers=manager.headers)
        assert resp.status_code == 200, resp.text
        return {r["phone_number"] for r in resp.json()["results"]}

    assert phones(timezone="Europe/Moscow") == {"+79162345678"}
    assert phones(timezone="Asia/Novosibirsk") == {"+79130999000"}
    assert phones(region="Республика Саха (Якутия)") == {"+79142712345"}
    assert phones(timezone_source="ambiguous") == {"+79142712345"}
    assert phones(timezone_source="registry,libphonenumber") == {
        "+79162345678", "+13125551234", "+79130999000",
    }  # fmt: skip
    for name, value in [
        ("timezone", "Mars/Olympus"), ("timezone", "../etc/passwd"), ("timezone", "UTC+3"),
        ("timezone_source", "guess"), ("region", "x" * 300),
    ]:  # fmt: skip
        resp = client.get(URL, params={name: value}, headers=manager.headers)
        assert resp.status_code == 400, (name, resp.text)
        assert name in resp.json(), resp.json()
