"""Stored JSON that can never be read back.

On main a manager's PATCH of `result_data` nested 256 deep answered 500 *after committing*: the
response serializer (pydantic-core, 255 levels) gave up on a value the database had taken. From
then on the number, its project's list, the admin's list and the audit log answered 500, and a
signed webhook `call_result` did the same to the pop-up for good. Now every JSON object the API
accepts is capped (models/json_limits.py: depth and size, 400 naming the field, nothing stored),
and every read survives whatever is already stored, written here with SQL past every limit.
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.parse
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from api.webhook_auth import signed_headers
from models.json_limits import (
    MAX_BYTES,
    MAX_DEPTH,
    READ_MAX_DEPTH,
    ClippedJson,
    clip_text,
    depth_of,
    load_stored_json,
)
from tests.api.conftest import TEST_SETTINGS
from tests.api.util import audit_rows, table_state

SECRET = TEST_SETTINGS["softphone_webhook_secret"]
PHONE = "+79161112233"


def nested(depth: int) -> dict[str, Any]:
    """An object `depth` levels deep (`{}` is 1)."""
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def nested_text(depth: int) -> str:
    """The same as JSON text, built without Python's recursion (for depths json can't dump)."""
    return '{"a":' * (depth - 1) + "{}" + "}" * (depth - 1)


@pytest.fixture
def number(factory, manager):  # type: ignore[no-untyped-def]
    project = factory.project(members=[manager.user])
    return factory.number(project, PHONE, result_data={"kept": 1})


def _webhook(client: TestClient, events: Any) -> Any:
    body = json.dumps(events).encode()
    return client.post(
        "/api/softphone/webhook/", content=body, headers=signed_headers(SECRET, body)
    )


def _event(**kw: Any) -> dict[str, Any]:
    return {
        "event_id": kw.pop("event_id", "ev-deep-1"),
        "event_type": "call_result",
        "status": "success",
        "phone_number": PHONE,
        "occurred_at": (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).isoformat(),
        **kw,
    }


# --- writes: over a limit is a 400 naming the field, and nothing is stored -----------------


def test_the_256_deep_patch_is_refused_and_nothing_is_committed(
    client, manager, number, db: Engine
) -> None:
    before = table_state(db, "phone_numbers")
    resp = client.patch(
        f"/api/phone-numbers/{number.id}/",
        json={"result_data": nested(256)},
        headers=manager.headers,
    )
    assert resp.status_code == 400, resp.text[:300]
    assert list(resp.json()) == ["result_data"]
    assert "32 levels" in resp.json()["result_data"][0]
    assert table_state(db, "phone_numbers") == before
    assert not audit_rows(db)
    # ... and the number, its lists and the audit log still read.
    assert client.get(f"/api/phone-numbers/{number.id}/", headers=manager.headers).is_success


def test_the_limits_edge(client, manager, number) -> None:
    url = f"/api/phone-numbers/{number.id}/"
    ok = client.patch(url, json={"result_data": nested(MAX_DEPTH)}, headers=manager.headers)
    assert ok.status_code == 200, ok.text
    assert depth_of(ok.json()["result_data"]) == MAX_DEPTH  # merged: same depth, kept key
    assert ok.json()["result_data"]["kept"] == 1
    over = client.patch(url, json={"result_data": nested(MAX_DEPTH + 1)}, headers=manager.headers)
    assert over.status_code == 400 and list(over.json()) == ["result_data"]
    big = {"blob": "x" * MAX_BYTES}
    over = client.patch(url, json={"result_data": big}, headers=manager.headers)
    assert over.status_code == 400 and list(over.json()) == ["result_data"], over.text[:200]
    assert "bytes" in over.json()["result_data"][0]


def test_a_merge_that_grows_past_the_size_limit_is_refused(
    client, manager, number, db: Engine
) -> None:
    url = f"/api/phone-numbers/{number.id}/"
    half = "x" * (MAX_BYTES // 2 + 100)
    assert client.patch(url, json={"result_data": {"a": half}}, headers=manager.headers).is_success
    before = table_state(db, "phone_numbers")
    resp = client.patch(url, json={"result_data": {"b": half}}, headers=manager.headers)
    assert resp.status_code == 400, resp.text[:200]
    assert list(resp.json()) == ["result_data"]
    assert table_state(db, "phone_numbers") == before


@pytest.mark.parametrize("field", ["attributes", "result_data"])
def test_number_create_caps_both_objects(client, manager, number, field: str, db) -> None:
    body = {"phone_number": "+79161112234", "project_id": number.project_id, field: nested(300)}
    resp = client.post("/api/phone-numbers/", json=body, headers=manager.headers)
    assert resp.status_code == 400 and list(resp.json()) == [field], resp.text[:300]
    assert table_state(db, "phone_numbers")["phone_numbers"].__len__() == 1


def test_bulk_create_caps_attributes(client, manager, number, db) -> None:
    for depth, field in ((40, "numbers.1.attributes"), (300, "non_field_errors")):
        item = {"phone_number": "+79161112236", "attributes": nested(depth)}
        body = {"project_id": number.project_id, "numbers": ["+79161112235", item]}
        resp = client.post("/api/phone-numbers/bulk/", json=body, headers=manager.headers)
        assert resp.status_code == 400, resp.text[:300]
        # 300 deep is past pydantic's own JSON parser (the route parses its body itself).
        assert list(resp.json()) == [field], resp.json()
    assert len(table_state(db, "phone_numbers")["phone_numbers"]) == 1


def test_bulk_update_filter_is_capped(client, manager, number) -> None:
    body = {"filter": {"status": [nested(300)]}, "set": {"status": "in_progress"}}
    resp = client.post("/api/phone-numbers/bulk-update/", json=body, headers=manager.headers)
    assert resp.status_code == 400 and list(resp.json()) == ["filter"], resp.text[:300]


@pytest.mark.parametrize("method", ["post", "put", "patch"])
def test_provider_contact_info_is_capped(client, admin, factory, method: str, db) -> None:
    provider = factory.provider()
    before = table_state(db, "providers")
    body: dict[str, Any] = {"contact_info": nested(300)}
    if method == "post":
        body |= {"code": "deep", "name": "Deep"}
        url = "/api/providers/"
    else:
        url = f"/api/providers/{provider.id}/"
        if method == "put":
            body |= {"name": "Deep", "status": "active"}
    resp = client.request(method.upper(), url, json=body, headers=admin.headers)
    assert resp.status_code == 400 and list(resp.json()) == ["contact_info"], resp.text[:300]
    assert table_state(db, "providers") == before


def test_sftp_job_params_are_capped(client, manager, number, db) -> None:
    body = {"project_id": number.project_id, "filters": {"status": nested(300)}}
    resp = client.post("/api/sftp/export/", json=body, headers=manager.headers)
    assert resp.status_code == 400 and list(resp.json()) == ["filters"], resp.text[:300]
    assert table_state(db, "sftp_jobs") == {"sftp_jobs": []}


def test_webhook_result_data_is_capped_and_nothing_is_stored(client, number, db) -> None:
    before = table_state(db, "phone_numbers", "call_events")
    resp = _webhook(client, _event(result_data=nested(256)))
    assert resp.status_code == 400, resp.text[:300]
    assert list(resp.json()) == ["result_data"]
    # An unknown field is kept in the stored payload: it is capped the same way.
    resp = _webhook(client, _event(event_id="ev-deep-2", notes=[nested(40)]))
    assert resp.status_code == 400 and list(resp.json()) == ["notes"], resp.text[:300]
    assert table_state(db, "phone_numbers", "call_events") == before
    # In a batch: that event is an error by index, the others go through.
    resp = _webhook(client, [_event(event_id="ok-1"), _event(result_data=nested(256))])
    assert resp.status_code == 207, resp.text[:300]
    results = resp.json()["results"]
    assert [r["result"] for r in results] == ["accepted", "error"]
    assert results[1]["reason"].startswith("result_data:")
    popup = "/api/softphone/number/" + urllib.parse.quote(PHONE, safe="") + "/"
    headers = {"X-API-Key": TEST_SETTINGS["softphone_api_key"]}
    assert client.get(popup, headers=headers).status_code == 200


# --- reads: whatever is stored, every read answers 200 --------------------------------------

# Past pydantic-core's serializer (255), past Python's json (~1,000), not an object, and a
# number too long for Python's int.
STORED = {
    "deep-300": nested_text(300),
    "deep-3000": nested_text(3000),
    "not-an-object": "[1, [2, [3]]]",
    "long-number": '{"n": 1' + "0" * 5000 + "}",
}


def _json_ok(resp: Any) -> Any:
    assert resp.status_code == 200, (resp.status_code, resp.text[:300])
    return resp.json()


@pytest.mark.parametrize("stored", list(STORED))
def test_every_read_survives_what_is_stored(
    client: TestClient, admin, manager, number, factory, db: Engine, stored: str
) -> None:
    value = STORED[stored]
    project = number.project_id
    provider = factory.provider()
    with db.begin() as conn:
        conn.execute(
            text("UPDATE phone_numbers SET result_data = :v, attributes = :v WHERE id = :id"),
            {"v": value, "id": number.id},
        )
        conn.execute(
            text("UPDATE providers SET contact_info = :v WHERE id = :id"),
            {"v": value, "id": provider.id},
        )
        conn.execute(
            text(
                "INSERT INTO call_events (event_id, event_type, phone_number, phone_number_id,"
                " project_id, matched, payload, occurred_at) VALUES ('stored-1', 'call_result',"
                " :phone, :id, :project, true, jsonb_build_object('status', 'success',"
                " 'result_data', CAST(:v AS jsonb)), now() - interval '1 minute')"
            ),
            {"phone": PHONE, "id": number.id, "project": project, "v": value},
        )
        conn.execute(
            text(
                "INSERT INTO audit_log (action, entity_type, entity_id, changes)"
                " VALUES ('update', 'phone_number', :id, CAST(:v AS jsonb))"
            ),
            {"id": number.id, "v": value},
        )
        conn.execute(
            text(
                "INSERT INTO sftp_jobs (job_type, project_id, params, stats)"
                " VALUES ('export', :project, CAST(:v AS jsonb), CAST(:v AS jsonb))"
            ),
            {"project": project, "v": value},
        )

    for actor in (admin, manager):
        card = _json_ok(client.get(f"/api/phone-numbers/{number.id}/", headers=actor.headers))
        assert isinstance(card["result_data"], dict)
        assert depth_of(card["result_data"]) <= READ_MAX_DEPTH
        page = _json_ok(client.get("/api/phone-numbers/", headers=actor.headers))
        assert [r["id"] for r in page["results"]] == [number.id]
        scoped = client.get(f"/api/phone-numbers/?project_id={project}", headers=actor.headers)
        _json_ok(scoped)
        cursor = client.get("/api/phone-numbers/?pagination=cursor", headers=actor.headers)
        _json_ok(cursor)
        export = client.get("/api/phone-numbers/export.csv", headers=actor.headers)
        assert export.status_code == 200 and export.text.count("\n") >= 2
        popup = "/api/softphone/number/" + urllib.parse.quote(PHONE, safe="") + "/"
        cards = _json_ok(client.get(popup, headers=actor.headers))["results"]
        assert cards[0]["last_result"]["status"] == "success"
        assert len(cards[0]["recent_events"]) == 1
        jobs = _json_ok(client.get("/api/sftp/jobs/", headers=actor.headers))["results"]
        _json_ok(client.get(f"/api/sftp/jobs/{jobs[0]['id']}/", headers=actor.headers))
        _json_ok(client.get(f"/api/providers/{provider.id}/", headers=actor.headers))
        _json_ok(client.get("/api/providers/", headers=actor.headers))
    _json_ok(client.get("/api/audit-log/", headers=admin.headers))

    # Writes next to such a value work, and a merge into it is a 400 (never a 500, never the
    # clipped copy written back).
    url = f"/api/phone-numbers/{number.id}/"
    _json_ok(client.patch(url, json={"status": "in_progress"}, headers=manager.headers))
    merge = client.patch(url, json={"result_data": {"x": 1}}, headers=manager.headers)
    if stored in ("deep-300", "deep-3000"):
        assert merge.status_code == 400 and list(merge.json()) == ["result_data"], merge.text
        with db.connect() as conn:  # the stored value is untouched
            kept = conn.execute(
                text("SELECT result_data::text FROM phone_numbers WHERE id = :id"),
                {"id": number.id},
            ).scalar_one()
        assert kept.count("{") == int(stored.split("-")[1])
    else:
        assert merge.status_code in (200, 400), merge.text
    replace = client.patch(
        url,
        json={"result_data": {"fixed": True}, "result_data_mode": "replace"},
        headers=manager.headers,
    )
    assert _json_ok(replace)["result_data"] == {"fixed": True}
    _json_ok(client.get("/api/audit-log/", headers=admin.headers))


# --- the read-side guard itself -------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='ab"\\{}[],: \n'),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(alphabet='a"\\{[', max_size=3), children, max_size=3)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None, database=None, derandomize=True)
@given(value=json_values, limit=st.integers(min_value=1, max_value=6))
def test_clip_text_agrees_with_clip_depth(value: Any, limit: int) -> None:
    """Clipping the text (for values too deep to parse) shows what clipping the parsed value
    shows, strings full of brackets and escapes included."""
    from models.json_limits import _clipped

    text = json.dumps(value)
    expected = _clipped(value, limit) if depth_of(value) > limit else value
    assert json.loads(clip_text(text, limit)) == expected


def test_load_stored_json_never_fails_and_never_returns_too_deep() -> None:
    for raw in (*STORED.values(), nested_text(READ_MAX_DEPTH), nested_text(READ_MAX_DEPTH + 1)):
        value = load_stored_json(raw.encode())
        assert depth_of(value) <= READ_MAX_DEPTH
    flat = load_stored_json(b'{"a": 1, "b": [1, 2]}')
    assert flat == {"a": 1, "b": [1, 2]} and not isinstance(flat, ClippedJson)
    assert isinstance(load_stored_json(nested_text(300).encode()), ClippedJson)
    assert load_stored_json(STORED["long-number"].encode())["n"] == "1" + "0" * 5000
