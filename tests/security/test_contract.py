"""The contract docs/api.md promises, where main broke it: unknown query parameters refused on
the numbers list and export too, strict types on number bodies, every 400 in the
`{field: [messages]}` shape with a real field name (never a character offset, never a bare
detail for NUL text or ids past BIGINT), 405s with a true `Allow`, literal paths winning over
`{number_id}`, and an OpenAPI document that validates and feeds a TypeScript client
generator (the generated client is compiled here)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openapi_spec_validator import validate

from api.webhook_auth import signed_headers
from tests.api.conftest import TEST_SETTINGS
from tests.api.util import audit_rows, table_state

ROOT = Path(__file__).resolve().parents[2]
NUMBERS = "/api/phone-numbers/"
BIG = 2**63  # one past BIGINT
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


@pytest.fixture
def project(factory, manager):  # type: ignore[no-untyped-def]
    project = factory.project(members=[manager.user])
    factory.number(project, "+79161230001", status="new")
    factory.number(project, "+79161230002", status="failed")
    return project


# --- unknown query parameters --------------------------------------------------------------


@pytest.mark.parametrize("url", [NUMBERS, NUMBERS + "export.csv"])
def test_a_misspelt_filter_is_refused_not_ignored(client, manager, project, db, url) -> None:
    resp = client.get(url, params={"stauts": "new"}, headers=manager.headers)
    assert resp.status_code == 400, resp.text[:200]
    assert list(resp.json()) == ["stauts"]
    assert "status" in resp.json()["stauts"][0]  # the hint lists the real names
    assert not audit_rows(db, action="export")  # nothing was exported


def test_every_numbers_route_refuses_unknown_query_parameters(client, manager, project) -> None:
    number_id = client.get(NUMBERS, headers=manager.headers).json()["results"][0]["id"]
    for method, path in (
        ("GET", f"{NUMBERS}{number_id}/"),
        ("PATCH", f"{NUMBERS}{number_id}/"),
        ("POST", NUMBERS + "bulk-update/"),
    ):
        resp = client.request(
            method, path, params={"dry_run": "true"}, json={}, headers=manager.headers
        )
        assert resp.status_code == 400 and "dry_run" in resp.json(), (method, path, resp.text)


# --- strict types --------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["PROJECT", "PROJECT.0", 16.0, True])
def test_number_create_does_not_coerce(client, manager, project, db, value: Any) -> None:
    if isinstance(value, str):
        value = value.replace("PROJECT", str(project.id))
    elif value is not True:
        value = float(project.id)
    body = {"phone_number": "+79161230003", "project_id": value}
    before = table_state(db, "phone_numbers")
    resp = client.post(NUMBERS, json=body, headers=manager.headers)
    assert resp.status_code == 400, resp.text
    assert list(resp.json()) == ["project_id"], resp.json()
    assert table_state(db, "phone_numbers") == before
    ok = client.post(NUMBERS, json={**body, "project_id": project.id}, headers=manager.headers)
    assert ok.status_code == 201, ok.text


def test_patch_and_bulk_update_do_not_coerce(client, manager, project) -> None:
    number_id = client.get(NUMBERS, headers=manager.headers).json()["results"][0]["id"]
    resp = client.patch(f"{NUMBERS}{number_id}/", json={"force": 0}, headers=manager.headers)
    assert resp.status_code == 400 and list(resp.json()) == ["force"], resp.text
    body = {"ids": [str(number_id)], "set": {"status": "in_progress"}}
    resp = client.post(NUMBERS + "bulk-update/", json=body, headers=manager.headers)
    assert resp.status_code == 400 and list(resp.json()) == ["ids.0"], resp.text


# --- error shapes --------------------------------------------------------------------------

MALFORMED = [b'{"phone_number": ', b"{'a': 1}", b'{"a": 1} trailing', b"\xff\xfe"]
# Too deep for Python's json (FastAPI's parser) and for pydantic's (the bulk route's).
DEEP = b'{"a":' * 10_000 + b"1" + b"}" * 10_000
ROUTES_WITH_BODY = [
    ("POST", NUMBERS),
    ("POST", NUMBERS + "bulk/"),
    ("POST", NUMBERS + "bulk-update/"),
    ("POST", "/api/projects/"),
    ("POST", "/api/providers/"),
    ("POST", "/api/sftp/export/"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES_WITH_BODY)
def test_unreadable_bodies_answer_in_the_contract_shape(client, admin, method, path) -> None:
    headers = {**admin.headers, "Content-Type": "application/json"}
    for body in [*MALFORMED, DEEP]:
        resp = client.request(method, path, content=body, headers=headers)
        assert resp.status_code == 400, (body[:20], resp.text[:200])
        payload = resp.json()
        assert list(payload) == ["non_field_errors"], (body[:20], payload)
        assert all(isinstance(m, str) and m for m in payload["non_field_errors"])
        assert payload["non_field_errors"][0].startswith("Malformed JSON body"), payload


def test_nul_text_is_a_400_naming_the_field(client, manager, admin, project, db) -> None:
    number_id = client.get(NUMBERS, headers=manager.headers).json()["results"][0]["id"]
    url = f"{NUMBERS}{number_id}/"
    for body, field in (
        ({"result_data": {"note": "a\u0000b"}}, "result_data"),
        ({"result_data": {"a\u0000": 1}}, "result_data"),
    ):
        resp = client.patch(url, json=body, headers=manager.headers)
        assert resp.status_code == 400 and list(resp.json()) == [field], resp.text
    body = {"phone_number": "+79161230003", "project_id": project.id, "attributes": {"x": "\0"}}
    resp = client.post(NUMBERS, json=body, headers=manager.headers)
    assert resp.status_code == 400 and list(resp.json()) == ["attributes"], resp.text
    resp = client.get(NUMBERS, params={"phone": "+7916\u0000"}, headers=manager.headers)
    assert resp.status_code == 400 and list(resp.json()) == ["phone"], resp.text
    event = {
        "event_id": "nul\u0000id",
        "event_type": "call_started",
        "phone_number": "+79161230001",
        "occurred_at": "2024-05-01T10:00:00Z",
    }
    raw = json.dumps(event).encode()
    secret = TEST_SETTINGS["softphone_webhook_secret"]
    resp = client.post("/api/softphone/webhook/", content=raw, headers=signed_headers(secret, raw))
    assert resp.status_code == 400 and list(resp.json()) == ["event_id"], resp.text
    assert table_state(db, "call_events") == {"call_events": []}


def test_ids_past_bigint_are_a_400_naming_the_field(client, manager, admin, project) -> None:
    for method in ("GET", "PATCH", "DELETE"):
        resp = client.request(method, f"{NUMBERS}{BIG}/", json={}, headers=admin.headers)
        assert resp.status_code == 400, (method, resp.text)
        assert list(resp.json()) == ["number_id"], (method, resp.json())
    for body, field in (
        ({"phone_number": "+79161230003", "project_id": BIG}, "project_id"),
        ({"phone_number": "+79161230003", "project_id": project.id, "geo_id": BIG}, "geo_id"),
    ):
        resp = client.post(NUMBERS, json=body, headers=manager.headers)
        assert resp.status_code == 400 and list(resp.json()) == [field], resp.text
    body = {"ids": [1, BIG], "set": {"status": "in_progress"}}
    resp = client.post(NUMBERS + "bulk-update/", json=body, headers=manager.headers)
    assert resp.status_code == 400 and list(resp.json()) == ["ids.1"], resp.text
    body = {"project_id": project.id, "numbers": ["+79161230004"], "provider_id": BIG}
    resp = client.post(NUMBERS + "bulk/", json=body, headers=manager.headers)
    assert resp.status_code == 400 and list(resp.json()) == ["provider_id"], resp.text


# --- routing: 405 and literal paths --------------------------------------------------------


def _documented(client: TestClient) -> dict[str, set[str]]:
    schema = client.get("/api/openapi.json").json()
    return {
        path: {m.upper() for m in item if m.upper() in METHODS}
        for path, item in schema["paths"].items()
    }


def test_bulk_update_is_not_taken_for_a_number_id(client, admin) -> None:
    resp = client.patch(NUMBERS + "bulk-update/", json={}, headers=admin.headers)
    assert resp.status_code == 405, resp.text
    assert resp.headers["allow"] == "POST"
    resp = client.delete(NUMBERS + "bulk/", headers=admin.headers)
    assert resp.status_code == 405 and resp.headers["allow"] == "POST"


def test_every_405_lists_the_methods_the_path_really_has(client: TestClient, admin) -> None:
    """Generic: every documented path, every method it does not have."""
    checked = 0
    for path, methods in _documented(client).items():
        concrete = re.sub(r"\{[^}]+\}", "1", path)
        for method in set(METHODS) - methods:
            resp = client.request(method, concrete, headers=admin.headers)
            assert resp.status_code == 405, (method, path, resp.status_code, resp.text[:200])
            allow = {m.strip() for m in resp.headers["allow"].split(",")}
            assert allow == methods, (method, path, resp.headers["allow"], methods)
            assert resp.json() == {"detail": "Method Not Allowed"}
            checked += 1
    assert checked > 60


# --- the OpenAPI document feeds client generators ------------------------------------------


def test_openapi_document_validates(client: TestClient) -> None:
    schema = client.get("/api/openapi.json").json()
    validate(schema)  # OpenAPI 3.1 rules, every $ref resolved
    body = schema["paths"]["/api/phone-numbers/bulk/"]["post"]["requestBody"]["content"]
    ref = body["application/json"]["schema"]["$ref"]
    assert ref.rsplit("/", 1)[1] in schema["components"]["schemas"]


TS_DIR = ROOT / "tests" / "ts_client"
TS_CACHE = ROOT / ".numbase" / "ts-client"


def _npm_ready() -> Path:
    """tests/ts_client's pinned tools, installed once per lock file into .numbase/."""
    lock = (TS_DIR / "package-lock.json").read_bytes()
    stamp = TS_CACHE / ".lock-sha256"
    digest = hashlib.sha256(lock).hexdigest()
    if not stamp.exists() or stamp.read_text() != digest:
        TS_CACHE.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(TS_DIR / name, TS_CACHE / name)
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"],
            cwd=TS_CACHE,
            check=True,
            timeout=600,
        )
        stamp.write_text(digest)
    return TS_CACHE / "node_modules" / ".bin"


@pytest.mark.skipif(
    shutil.which("node") is None or shutil.which("npm") is None,
    reason="node and npm are not installed: the TypeScript client cannot be generated here",
)
def test_a_generated_typescript_client_compiles(client: TestClient, tmp_path: Path) -> None:
    bin_dir = _npm_ready()
    spec = tmp_path / "openapi.json"
    spec.write_text(json.dumps(client.get("/api/openapi.json").json()))
    (tmp_path / "generated").mkdir()
    for name in ("tsconfig.json", "usage.ts"):
        shutil.copy(TS_DIR / name, tmp_path / name)
    steps = [
        # A default makes a field optional in a request: not "always present".
        [
            str(bin_dir / "openapi-typescript"),
            str(spec),
            "-o",
            "generated/api.ts",
            "--default-non-nullable=false",
        ],
        [str(bin_dir / "tsc"), "-p", "tsconfig.json"],
    ]
    for cmd in steps:
        done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{cmd[0]}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
