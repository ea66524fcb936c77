"""Every filter of the numbers list and its export is checked before anything runs: values
PostgreSQL cannot compare (past int/bigint, timestamps that overflow) are a 400 naming the
filter, never a database error mid-stream. The export used to answer 200 and then die inside
COPY, leaving the client a truncated file with no error."""

from __future__ import annotations

import pytest

from tests.api.util import audit_rows

LIST = "/api/phone-numbers/"
EXPORT = "/api/phone-numbers/export.csv"
INT4_MAX = 2**31 - 1
BIGINT_MAX = 2**63 - 1

BAD = [
    ("call_attempts_lt", str(2**33)),
    ("call_attempts_lt", str(INT4_MAX + 1)),
    ("call_attempts_gte", str(2**40)),
    ("call_attempts_gte", "-1"),
    ("project_id", str(BIGINT_MAX + 1)),
    ("provider_id", str(2**64)),
    ("geo_id", str(BIGINT_MAX + 1)),
    ("last_call_before", "10000-01-01T00:00:00Z"),
    ("created_after", "2024-13-01"),
    ("created_before", "0.5"),  # not a Unix timestamp: ISO 8601 only
]


@pytest.fixture
def numbers(factory, manager):  # type: ignore[no-untyped-def]
    project = factory.project(members=[manager.user])
    for i in range(3):
        factory.number(project, f"+7916555000{i}")
    return project


@pytest.mark.parametrize(("name", "value"), BAD)
@pytest.mark.parametrize("url", [LIST, EXPORT])
@pytest.mark.parametrize("role", ["admin", "manager"])
def test_bad_filter_is_a_400_naming_it_before_the_first_byte(
    request, client, db, numbers, url: str, name: str, value: str, role: str
) -> None:
    actor = request.getfixturevalue(role)
    resp = client.get(url, params={name: value}, headers=actor.headers)
    assert resp.status_code == 400, (resp.status_code, resp.text[:300])
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert list(body) == [name], body
    # Nothing was exported: no audit row claims an export happened.
    assert not audit_rows(db, action="export")


@pytest.mark.parametrize("url", [LIST, EXPORT])
def test_filters_at_their_bounds_are_accepted(client, admin, numbers, url: str) -> None:
    params = {
        "call_attempts_lt": str(INT4_MAX),
        "call_attempts_gte": "0",
        # Instants Python cannot convert to UTC but PostgreSQL compares fine.
        "created_after": "0001-01-01T00:00:00+05:00",
        "created_before": "9999-12-31T23:59:59-05:00",
    }
    resp = client.get(url, params=params, headers=admin.headers)
    assert resp.status_code == 200, resp.text
    if url == EXPORT:
        assert resp.text.count("\n") == 4  # header + 3 numbers: the whole file
    else:
        assert resp.json()["count"] == 3
    resp = client.get(url, params={"project_id": str(BIGINT_MAX)}, headers=admin.headers)
    assert resp.status_code == 404, resp.text  # a valid id of no project


@pytest.mark.parametrize(
    ("filters", "field"),
    [
        ({"call_attempts_lt": 2**33}, "filter.call_attempts_lt"),
        ({"project_id": 2**63}, "filter.project_id"),
        ({"created_after": "yesterday"}, "filter.created_after"),
        ({"call_attempts_gte": 1.5}, "filter.call_attempts_gte"),
    ],
)
def test_bulk_update_filter_is_checked_the_same_way(
    client, admin, numbers, filters: dict, field: str
) -> None:
    body = {"filter": filters, "set": {"status": "in_progress"}}
    resp = client.post("/api/phone-numbers/bulk-update/", json=body, headers=admin.headers)
    assert resp.status_code == 400, resp.text
    assert list(resp.json()) == [field], resp.json()


def test_sftp_export_filters_are_checked_the_same_way(client, admin, numbers) -> None:
    body = {"project_id": numbers.id, "filters": {"call_attempts_gte": 2**33}}
    resp = client.post("/api/sftp/export/", json=body, headers=admin.headers)
    assert resp.status_code == 400, resp.text
    assert list(resp.json()) == ["filters.call_attempts_gte"], resp.json()


def test_a_cursor_with_an_id_past_bigint_is_a_400_on_cursor(client, admin, numbers) -> None:
    import base64
    import json

    raw = json.dumps({"o": "id", "i": 2**64}).encode()
    token = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    resp = client.get(LIST, params={"cursor": token}, headers=admin.headers)
    assert resp.status_code == 400, resp.text
    assert list(resp.json()) == ["cursor"], resp.json()


@pytest.mark.parametrize("path", ["/api/phone-numbers/", "/api/phone-numbers/export.csv"])
def test_offsets_postgresql_refuses_are_taken_as_utc(client, admin, path: str) -> None:
    """Schemathesis found it: Python parses -16:30, PostgreSQL refuses offsets past +-15:59 (the
    export then died after its 200); an offset pushing the instant past year 9999 is clamped."""
    for when in ("1869-10-22T06:49:04-16:30", "9999-12-31T23:59:00-16:30"):
        resp = client.get(path, params={"created_after": when}, headers=admin.headers)
        assert resp.status_code == 200, resp.text
