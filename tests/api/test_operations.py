"""Operations endpoints: liveness, readiness (migrations at head), request ids, JSON access logs
and Prometheus metrics."""

from __future__ import annotations

import json
import re

from sqlalchemy import text


def test_health_and_ready(client) -> None:
    assert client.get("/api/health").json() == {"status": "ok", "database": "ok"}
    ready = client.get("/api/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ok"


def test_ready_is_503_when_migrations_are_behind(client, db) -> None:
    with db.begin() as conn:
        head = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        conn.execute(text("UPDATE alembic_version SET version_num = 'older'"))
    try:
        resp = client.get("/api/ready")
        assert resp.status_code == 503
        assert resp.json()["migrations"] == {"current": "older", "head": head}
        assert client.get("/api/health").status_code == 200  # alive, just not ready
    finally:
        with db.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": head})


def test_request_id_is_echoed_or_made_and_logged_as_json(client, capfd) -> None:
    given = client.get("/api/health", headers={"X-Request-ID": "abc123"})
    assert given.headers["x-request-id"] == "abc123"
    made = client.get("/api/health")
    assert len(made.headers["x-request-id"]) == 32
    lines = [
        json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")
    ]
    access = [e for e in lines if e.get("logger") == "numbase.api.access"]
    assert any(e["request_id"] == "abc123" and e["status"] == 200 for e in access)
    assert all({"ts", "level", "route", "duration_ms"} <= set(e) for e in access)


def test_metrics_count_requests_by_route(client) -> None:
    client.get("/api/auth/me/")
    body = client.get("/metrics").text
    assert 'numbase_http_requests_total{method="GET",route="/api/auth/me/",status="401"}' in body
    assert "numbase_http_request_duration_seconds_bucket" in body


def test_metrics_count_webhook_events_and_bulk_rows(client, admin, factory) -> None:
    import json as _json
    import time

    from api.webhook_auth import signed_headers

    project = factory.project()
    factory.number(project, "+79161234567")
    body = _json.dumps(
        [
            {
                "event_id": "m-1",
                "event_type": "call_started",
                "phone_number": "+79161234567",
                "occurred_at": "2026-01-01T10:00:00Z",
            },
            {
                "event_id": "m-2",
                "event_type": "call_started",
                "phone_number": "+70000000000",
                "occurred_at": "2026-01-01T10:00:00Z",
            },
        ]
    ).encode()
    headers = signed_headers("webhook-secret-for-tests", body, int(time.time()))
    assert client.post("/api/softphone/webhook/", content=body, headers=headers).status_code in (
        200,
        202,
    )
    resp = client.post(
        "/api/phone-numbers/bulk/",
        headers=admin.headers,
        json={"project_id": project.id, "numbers": ["+79161230000", "garbage"]},
    )
    assert resp.status_code in (200, 201), resp.text
    text = client.get("/metrics").text
    assert 'numbase_webhook_events_total{outcome="accepted"}' in text
    assert 'numbase_webhook_events_total{outcome="unmatched"}' in text
    # Process-wide counters (other tests post events too): present and counting.
    for name in ("numbase_webhook_transactions_total", "numbase_webhook_requests_grouped_total"):
        assert float(re.search(rf"^{name} (\S+)$", text, re.M)[1]) >= 1  # type: ignore[index]
    assert 'numbase_api_bulk_rows_total{outcome="inserted"}' in text
    assert 'numbase_api_bulk_rows_total{outcome="invalid"}' in text
