"""SoftPhone pop-up: any phone format, every visible project, scope, the service key."""

from __future__ import annotations

import datetime as dt
import urllib.parse
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from tests.api.conftest import TEST_SETTINGS
from tests.api.test_softphone_webhook import T0, ev, post

SERVICE = {"X-API-Key": TEST_SETTINGS["softphone_api_key"]}
PHONE = "+79161234567"


def popup_url(phone: str) -> str:
    return "/api/softphone/number/" + urllib.parse.quote(phone, safe="") + "/"


@pytest.fixture
def numbers(factory, manager, session: Session):  # type: ignore[no-untyped-def]
    """PHONE in two projects (the manager is a member of the first) and in a deleted one."""
    mine = factory.project(members=[manager.user], name="Mine")
    theirs = factory.project(name="Theirs")
    gone = factory.project(name="Gone")
    provider = factory.provider(name="Leads Inc")
    geo = factory.geo(region="Novosibirsk", city="Novosibirsk", timezone="Asia/Novosibirsk")
    a = factory.number(
        mine, PHONE, provider_id=provider.id, geo_id=geo.id, attributes={"name": "Ivan"}
    )
    b = factory.number(theirs, PHONE)
    factory.number(gone, PHONE)
    session.execute(
        text("UPDATE projects SET is_deleted = true, deleted_at = now(), status = 'deleted' "
             "WHERE id = :id"),
        {"id": gone.id},
    )  # fmt: skip
    session.commit()
    return {"mine": mine, "theirs": theirs, "a": a, "b": b, "provider": provider, "geo": geo}


@pytest.mark.parametrize(
    "typed",
    ["+79161234567", "89161234567", "8 (916) 123-45-67", "+7 916 123 45 67", "9161234567",
     "007-916-123-4567", "7.9161234567E10"],
)  # fmt: skip
def test_popup_finds_a_number_typed_in_any_format(
    client: TestClient, admin, numbers, typed: str
) -> None:
    resp = client.get(popup_url(typed), headers=admin.headers)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["phone_number"] == PHONE
    assert body["count"] == 2  # the deleted project's row is invisible
    assert {c["project"]["id"] for c in body["results"]} == {
        numbers["mine"].id,
        numbers["theirs"].id,
    }


def test_raw_plus_and_encoded_plus_in_the_path(client: TestClient, admin, numbers) -> None:
    for path in ("/api/softphone/number/+79161234567/", "/api/softphone/number/%2B79161234567/"):
        assert client.get(path, headers=admin.headers).json()["count"] == 2


def test_card_content(client: TestClient, admin, numbers, session: Session) -> None:
    events = [ev("call_started", PHONE, T0 + dt.timedelta(minutes=i), project_id=numbers["mine"].id)
              for i in range(11)]  # fmt: skip
    events.append(
        ev("call_result", PHONE, T0 + dt.timedelta(hours=1), project_id=numbers["mine"].id,
           status="success", result_data={"deal": True})
    )  # fmt: skip
    events.append(
        ev("call_ended", PHONE, T0 + dt.timedelta(hours=2), project_id=numbers["mine"].id)
    )
    assert post(client, events).status_code == 200
    cards = client.get(popup_url(PHONE), headers=admin.headers).json()["results"]
    card = next(c for c in cards if c["project"]["id"] == numbers["mine"].id)
    assert card["project"] == {
        "id": numbers["mine"].id,
        "code": numbers["mine"].code,
        "name": "Mine",
    }
    assert card["provider"]["name"] == "Leads Inc"
    assert card["geo"]["timezone"] == "Asia/Novosibirsk"
    assert (card["timezone"], card["timezone_source"]) == ("Asia/Novosibirsk", "geo")
    local = dt.datetime.fromisoformat(card["local_time"])
    assert local.utcoffset() == dt.datetime.now(ZoneInfo("Asia/Novosibirsk")).utcoffset()
    assert abs((local - dt.datetime.now(dt.UTC)).total_seconds()) < 60
    assert (card["status"], card["call_attempts"]) == ("success", 1)
    assert card["last_call_at"].startswith((T0 + dt.timedelta(hours=2)).strftime("%Y-%m-%dT%H"))
    assert card["last_result"]["status"] == "success"
    assert card["last_result"]["result_data"] == {"deal": True}
    assert card["attributes"] == {"name": "Ivan"}
    assert card["result_data"] == {"deal": True}
    recent = card["recent_events"]
    assert len(recent) == 10
    assert [e["event_type"] for e in recent[:2]] == ["call_ended", "call_result"]
    times = [e["occurred_at"] for e in recent]
    assert times == sorted(times, reverse=True)
    # No geo, and a mobile number that could be anywhere in Russia: no time zone.
    other = next(c for c in cards if c["project"]["id"] == numbers["theirs"].id)
    assert other["geo"] is None and other["provider"] is None
    assert (other["timezone"], other["timezone_source"], other["local_time"]) == (None,) * 3
    assert other["recent_events"] == [] and other["last_result"] is None


def test_time_zone_falls_back_to_the_numbers_own(client: TestClient, admin, factory) -> None:
    factory.number(factory.project(), "+74951234567")  # a Moscow landline, no geo
    card = client.get(popup_url("8 495 123-45-67"), headers=admin.headers).json()["results"][0]
    assert (card["timezone"], card["timezone_source"]) == ("Europe/Moscow", "phone")
    local = dt.datetime.fromisoformat(card["local_time"])
    assert local.utcoffset() == dt.timedelta(hours=3)


def test_manager_sees_only_their_projects(
    client: TestClient, manager, other_manager, numbers
) -> None:
    mine = client.get(popup_url(PHONE), headers=manager.headers).json()
    assert [c["project"]["id"] for c in mine["results"]] == [numbers["mine"].id]
    resp = client.get(popup_url(PHONE), headers=other_manager.headers)
    assert resp.status_code == 404
    assert resp.json() == {"detail": "Number not found."}


def test_unknown_invalid_and_unauthenticated(client: TestClient, admin, numbers) -> None:
    assert client.get(popup_url("+79990000000"), headers=admin.headers).status_code == 404
    resp = client.get(popup_url("call me"), headers=admin.headers)
    assert resp.status_code == 400 and resp.json() == {"phone": ["contains letters"]}
    assert client.get(popup_url(PHONE)).status_code == 401
    assert (
        client.get(popup_url(PHONE), headers={"X-API-Key": "wrong-key-wrong-key"}).status_code
        == 401
    )


def test_service_key_reads_everything_and_nothing_else(client: TestClient, numbers) -> None:
    resp = client.get(popup_url("8 916 123 45 67"), headers=SERVICE)
    assert resp.status_code == 200 and resp.json()["count"] == 2
    # Read-only: it is no user token and no webhook signature.
    assert client.get("/api/auth/me/", headers=SERVICE).status_code == 401
    assert client.post("/api/auth/logout/", headers=SERVICE).status_code == 401
    assert client.post("/api/softphone/webhook/", headers=SERVICE, json={}).status_code == 401
    bearer = {"Authorization": "Bearer " + TEST_SETTINGS["softphone_api_key"]}
    assert client.get(popup_url(PHONE), headers=bearer).status_code == 401
