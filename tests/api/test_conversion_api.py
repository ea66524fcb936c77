"""Conversion endpoints: snapshots and their history from project_conversions, durable
recalculation requests, and the dbt marts (a minimal `analytics` schema with the marts' columns,
built here; absent, the endpoints answer empty pages). Scope: 404 for other projects everywhere,
the all-projects marts for admins only."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from models.tables import ConversionRequest, ProjectConversion
from tests.api.util import audit_rows

T0 = dt.datetime(2024, 5, 1, 9, 0, tzinfo=dt.UTC)
METRICS = """total_numbers bigint, processed_numbers bigint, in_progress_numbers bigint,
    success_numbers bigint, failed_numbers bigint, no_answer_numbers bigint,
    conversion_rate numeric(5,2), call_attempts bigint, last_call_at timestamptz,
    calculated_at timestamptz"""
MARTS = {
    "fct_provider_conversion": "project_id bigint, provider_id bigint, provider_code text, "
    "provider_name text, " + METRICS,
    "fct_provider_conversion_overall": "provider_id bigint, provider_code text, "
    "provider_name text, " + METRICS,
    "fct_geo_conversion": "project_id bigint, geo_id bigint, country_code text, region text, "
    "city text, " + METRICS,
    "fct_geo_conversion_overall": "geo_id bigint, country_code text, region text, city text, "
    + METRICS,
    "fct_daily_call_outcomes": "project_id bigint, call_date date, events bigint, "
    "calls_started bigint, calls bigint, results bigint, success_results bigint, "
    "failed_results bigint, no_answer_results bigint, other_results bigint, "
    "success_rate numeric(5,2)",
}


def _drop_analytics(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS analytics CASCADE"))


@pytest.fixture
def no_analytics(db: Engine) -> Iterator[None]:
    """The state before the first dbt run (and left so: dbt recreates what it needs)."""
    _drop_analytics(db)
    yield
    _drop_analytics(db)


@pytest.fixture
def analytics(no_analytics: None, db: Engine) -> Engine:
    with db.begin() as conn:
        conn.execute(text("CREATE SCHEMA analytics"))
        for name, columns in MARTS.items():
            conn.execute(text(f"CREATE TABLE analytics.{name} ({columns})"))
    return db


def metrics(total: int, success: int, processed: int, **kw: Any) -> dict[str, Any]:
    rate = round(100 * success / processed, 2) if processed else 0
    return {
        "total_numbers": total,
        "processed_numbers": processed,
        "in_progress_numbers": kw.get("in_progress", 0),
        "success_numbers": success,
        "failed_numbers": kw.get("failed", 0),
        "no_answer_numbers": processed - success - kw.get("failed", 0) - kw.get("in_progress", 0),
        "conversion_rate": rate,
        "call_attempts": kw.get("attempts", 0),
        "last_call_at": kw.get("last_call_at"),
        "calculated_at": kw.get("at", T0),
    }


def insert(engine: Engine, name: str, **values: Any) -> None:
    cols = ", ".join(values)
    params = ", ".join(f":{c}" for c in values)
    with engine.begin() as conn:
        conn.execute(text(f"INSERT INTO {name} ({cols}) VALUES ({params})"), values)


def snapshot(engine: Engine, project_id: int, at: dt.datetime, total: int, success: int) -> int:
    with Session(engine) as s:
        row = ProjectConversion(project_id=project_id, **metrics(total, success, total, at=at))
        s.add(row)
        s.commit()
        return row.id


@pytest.fixture
def mine(factory, manager):  # type: ignore[no-untyped-def]
    return factory.project(members=[manager.user])


@pytest.fixture
def theirs(factory, other_manager):  # type: ignore[no-untyped-def]
    return factory.project(members=[other_manager.user])


# --- a project's conversion -------------------------------------------------------------------


def test_never_computed_is_200_with_nulls(client, db, mine, manager) -> None:
    resp = client.get(f"/api/projects/{mine.id}/conversion/", headers=manager.headers)
    assert resp.status_code == 200
    body = resp.json()
    assert body["project_id"] == mine.id and body["computed"] is False
    assert body["calculated_at"] is None and body["snapshot_id"] is None
    assert body["conversion_rate"] is None and body["total_numbers"] is None


@pytest.mark.parametrize("role", ["admin", "manager"])
def test_latest_snapshot_and_history(request, client, db, mine, theirs, role) -> None:
    actor = request.getfixturevalue(role)
    days = [T0 + dt.timedelta(days=i) for i in range(4)]
    ids = [snapshot(db, mine.id, at, total=10 + i, success=i) for i, at in enumerate(days)]
    snapshot(db, theirs.id, days[3] + dt.timedelta(hours=1), total=99, success=9)
    url = f"/api/projects/{mine.id}/conversion/"
    latest = client.get(url, headers=actor.headers).json()
    assert latest["computed"] and latest["snapshot_id"] == ids[3]
    assert latest["total_numbers"] == 13 and latest["success_numbers"] == 3
    assert latest["conversion_rate"] == pytest.approx(23.08)
    assert dt.datetime.fromisoformat(latest["calculated_at"]) == days[3]

    def series(query: str) -> list[int]:
        resp = client.get(f"{url}?history=true{query}", headers=actor.headers)
        assert resp.status_code == 200, resp.text
        return [r["id"] for r in resp.json()["results"]]

    assert series("") == ids  # oldest first
    assert series("&ordering=-calculated_at") == ids[::-1]
    assert series("&from=2024-05-02T09:00:00Z") == ids[1:]  # from inclusive
    assert series("&to=2024-05-03T09:00:00Z") == ids[:2]  # to exclusive
    assert series("&from=2024-05-02&to=2024-05-03T09:00:00%2B00:00") == ids[1:2]
    page = client.get(f"{url}?history=true&page_size=3", headers=actor.headers).json()
    assert page["count"] == 4 and page["next"] is not None and len(page["results"]) == 3
    row = page["results"][0]
    assert row["project_id"] == mine.id and row["total_numbers"] == 10


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("from=2024-05-01", "from"),  # only with history
        ("ordering=-calculated_at", "ordering"),
        ("history=true&from=0.5", "from"),
        ("history=true&to=yesterday", "to"),
        ("history=true&from=2024-05-02&to=2024-05-01", "from"),
        ("history=true&ordering=total_numbers", "ordering"),
        ("history=maybe", "history"),
        ("date=2024-05-01", "date"),
    ],
)
def test_conversion_query_errors_name_the_field(client, db, mine, manager, query, field) -> None:
    resp = client.get(f"/api/projects/{mine.id}/conversion/?{query}", headers=manager.headers)
    assert resp.status_code == 400 and field in resp.json(), resp.json()


# --- recalculation requests -------------------------------------------------------------------


def requests_rows(engine: Engine) -> list[ConversionRequest]:
    with Session(engine) as s:
        return list(s.scalars(select(ConversionRequest).order_by(ConversionRequest.id)).all())


@pytest.mark.parametrize("role", ["admin", "manager"])
def test_recalculate_queues_one_pending_request(request, client, db, mine, role) -> None:
    actor = request.getfixturevalue(role)
    url = f"/api/projects/{mine.id}/recalculate-conversion/"
    resp = client.post(url, headers=actor.headers)
    assert resp.status_code == 202, resp.text
    [row] = requests_rows(db)
    body = resp.json()
    assert (row.project_id, row.status, row.requested_by) == (mine.id, "pending", actor.user.id)
    assert row.dagster_run_id is None and row.started_at is None and row.completed_at is None
    assert body["id"] == row.id and body["status"] == "pending"
    poll = f"http://testserver/api/conversion/requests/{row.id}/"
    assert body["url"] == poll and resp.headers["location"] == poll
    [audit] = audit_rows(db)
    assert (audit.action, audit.entity_type, audit.entity_id, audit.user_id) == (
        "conversion.requested", "conversion_request", row.id, actor.user.id,
    )  # fmt: skip
    assert audit.changes == {"project_id": [None, mine.id], "status": [None, "pending"]}
    # Asking again while it is pending: the same request, no second row or audit entry.
    again = client.post(url, headers=actor.headers)
    assert again.status_code == 202 and again.json()["id"] == row.id
    assert len(requests_rows(db)) == 1 and len(audit_rows(db)) == 1
    # Once the sensor has started it, a new request is queued.
    with db.begin() as conn:
        conn.execute(text("UPDATE conversion_requests SET status = 'running', started_at = now()"))
    third = client.post(url, headers=actor.headers)
    assert third.status_code == 202 and third.json()["id"] != row.id
    status = client.get(third.json()["url"], headers=actor.headers)
    assert status.status_code == 200 and status.json()["status"] == "pending"
    first = client.get(poll, headers=actor.headers).json()
    assert first["status"] == "running" and first["started_at"] is not None


def test_other_projects_are_404_on_every_conversion_route(
    client, db, mine, theirs, manager, admin, factory
) -> None:
    snapshot(db, theirs.id, T0, total=5, success=1)
    gone = factory.project(members=[manager.user])
    client.delete(f"/api/projects/{gone.id}/", headers=admin.headers)
    with Session(db, expire_on_commit=False) as s:
        their_req = ConversionRequest(project_id=theirs.id)
        all_req = ConversionRequest(project_id=None)
        s.add_all([their_req, all_req])
        s.commit()
    n_requests, n_audit = len(requests_rows(db)), len(audit_rows(db))
    for project_id in (theirs.id, gone.id, 10**9):
        for method, url in (
            ("GET", f"/api/projects/{project_id}/conversion/"),
            ("GET", f"/api/projects/{project_id}/conversion/?history=true"),
            ("POST", f"/api/projects/{project_id}/recalculate-conversion/"),
            ("GET", f"/api/conversion/providers/?project_id={project_id}"),
            ("GET", f"/api/conversion/geo/?project_id={project_id}"),
            ("GET", f"/api/conversion/daily/?project_id={project_id}"),
        ):
            resp = client.request(method, url, headers=manager.headers)
            assert resp.status_code == 404, (method, url, resp.text)
            assert resp.json() == {"detail": "Project not found."}
    for request_id in (their_req.id, all_req.id, 10**9):
        resp = client.get(f"/api/conversion/requests/{request_id}/", headers=manager.headers)
        assert resp.status_code == 404
        assert resp.json() == {"detail": "Conversion request not found."}
    assert len(requests_rows(db)) == n_requests and len(audit_rows(db)) == n_audit
    # Admins see every project's requests, including the all-projects ones.
    resp = client.get(f"/api/conversion/requests/{all_req.id}/", headers=admin.headers)
    assert resp.status_code == 200 and resp.json()["project_id"] is None


# --- the marts --------------------------------------------------------------------------------


def test_missing_analytics_schema_is_an_empty_answer(
    client, db, no_analytics, mine, manager, admin
) -> None:
    for actor, url in (
        (manager, "/api/conversion/providers/"),
        (manager, f"/api/conversion/providers/?project_id={mine.id}"),
        (manager, "/api/conversion/geo/"),
        (admin, "/api/conversion/providers/?overall=true"),
        (admin, "/api/conversion/geo/?overall=true&geo_id=3"),
        (manager, "/api/conversion/daily/?date_from=2024-05-01"),
    ):
        resp = client.get(url, headers=actor.headers)
        assert resp.status_code == 200, (url, resp.text)
        assert resp.json() == {"count": 0, "next": None, "previous": None, "results": []}
    # Validation still applies before the schema is looked at.
    resp = client.get("/api/conversion/geo/?ordering=bogus", headers=manager.headers)
    assert resp.status_code == 400


def test_provider_conversion_is_scoped(
    client, analytics, mine, theirs, manager, admin, factory
) -> None:
    p1, p2 = factory.provider(code="leadco"), factory.provider(code="callme")
    gone = factory.project(members=[manager.user])
    mart = "analytics.fct_provider_conversion"
    insert(analytics, mart, project_id=mine.id, provider_id=p1.id, provider_code="leadco",
           provider_name="LeadCo", **metrics(10, 2, 8))  # fmt: skip
    insert(analytics, mart, project_id=mine.id, provider_id=None, **metrics(4, 3, 4))
    insert(analytics, mart, project_id=theirs.id, provider_id=p2.id, **metrics(50, 10, 20))
    insert(analytics, mart, project_id=gone.id, provider_id=p1.id, **metrics(7, 0, 0))
    overall = "analytics.fct_provider_conversion_overall"
    insert(analytics, overall, provider_id=p1.id, provider_code="leadco", **metrics(17, 2, 8))
    insert(analytics, overall, provider_id=p2.id, provider_code="callme", **metrics(50, 10, 20))
    client.delete(f"/api/projects/{gone.id}/", headers=admin.headers)

    def rows(actor, query: str = "") -> list[tuple[Any, ...]]:
        resp = client.get(f"/api/conversion/providers/{query}", headers=actor.headers)
        assert resp.status_code == 200, resp.text
        return [(r["scope"], r["project_id"], r["provider_id"], r["conversion_rate"])
                for r in resp.json()["results"]]  # fmt: skip

    # A manager: their projects' rows only (the deleted project's too is gone), never overall.
    assert rows(manager) == [("project", mine.id, p1.id, 25.0), ("project", mine.id, None, 75.0)]
    assert rows(manager, f"?provider_id={p1.id}") == [("project", mine.id, p1.id, 25.0)]
    assert rows(manager, "?ordering=-conversion_rate")[0][3] == 75.0
    assert rows(manager, f"?provider_id={p2.id}") == []
    resp = client.get("/api/conversion/providers/?overall=true", headers=manager.headers)
    assert resp.status_code == 403
    # An admin: every live project's rows, or the all-projects mart.
    assert [r[1] for r in rows(admin)] == [mine.id, mine.id, theirs.id]
    assert rows(admin, f"?project_id={theirs.id}") == [("project", theirs.id, p2.id, 50.0)]
    assert rows(admin, "?overall=true") == [
        ("overall", None, p1.id, 25.0), ("overall", None, p2.id, 50.0),
    ]  # fmt: skip
    full = client.get("/api/conversion/providers/?overall=true", headers=admin.headers).json()
    first = full["results"][0]
    assert first["provider_code"] == "leadco" and first["total_numbers"] == 17
    assert dt.datetime.fromisoformat(first["calculated_at"]) == T0


def test_geo_conversion_is_scoped(client, analytics, mine, theirs, manager, admin, factory) -> None:
    g1, g2 = factory.geo(city="Moscow"), factory.geo(city="Kazan")
    mart = "analytics.fct_geo_conversion"
    insert(analytics, mart, project_id=mine.id, geo_id=g1.id, city="Moscow", **metrics(3, 1, 2))
    insert(analytics, mart, project_id=theirs.id, geo_id=g2.id, city="Kazan", **metrics(5, 5, 5))
    insert(analytics, "analytics.fct_geo_conversion_overall", geo_id=g2.id, **metrics(5, 5, 5))
    resp = client.get("/api/conversion/geo/", headers=manager.headers).json()
    assert [(r["project_id"], r["geo_id"], r["city"]) for r in resp["results"]] == [
        (mine.id, g1.id, "Moscow")
    ]
    assert resp["results"][0]["conversion_rate"] == 50.0
    refused = client.get("/api/conversion/geo/?overall=true", headers=manager.headers)
    assert refused.status_code == 403
    admin_rows = client.get(f"/api/conversion/geo/?geo_id={g2.id}", headers=admin.headers).json()
    assert [r["project_id"] for r in admin_rows["results"]] == [theirs.id]
    overall = client.get("/api/conversion/geo/?overall=true", headers=admin.headers).json()
    assert [(r["scope"], r["geo_id"]) for r in overall["results"]] == [("overall", g2.id)]


def test_daily_outcomes_filter_by_date(client, analytics, mine, theirs, manager) -> None:
    for day in (1, 2, 3):
        insert(analytics, "analytics.fct_daily_call_outcomes", project_id=mine.id,
               call_date=dt.date(2024, 5, day), events=3 * day, calls_started=day, calls=day,
               results=day, success_results=1, failed_results=day - 1, no_answer_results=0,
               other_results=0, success_rate=round(100 / day, 2))  # fmt: skip
    insert(analytics, "analytics.fct_daily_call_outcomes", project_id=theirs.id,
           call_date=dt.date(2024, 5, 2), events=1, calls_started=1, calls=1, results=0,
           success_results=0, failed_results=0, no_answer_results=0, other_results=0,
           success_rate=0)  # fmt: skip

    def days(query: str = "") -> list[str]:
        resp = client.get(f"/api/conversion/daily/{query}", headers=manager.headers)
        assert resp.status_code == 200, resp.text
        return [r["call_date"] for r in resp.json()["results"]]

    assert days() == ["2024-05-01", "2024-05-02", "2024-05-03"]
    assert days("?date_from=2024-05-02") == ["2024-05-02", "2024-05-03"]
    assert days("?date_from=2024-05-02&date_to=2024-05-02") == ["2024-05-02"]  # both inclusive
    assert days("?ordering=-call_date")[0] == "2024-05-03"
    row = client.get("/api/conversion/daily/?date_to=2024-05-01", headers=manager.headers).json()
    assert row["results"][0]["success_rate"] == 100.0 and row["results"][0]["events"] == 3


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/api/conversion/providers/?overall=true&project_id=1", "overall"),
        ("/api/conversion/providers/?ordering=provider_name", "ordering"),
        ("/api/conversion/providers/?provider_id=0", "provider_id"),
        ("/api/conversion/providers/?date=2024-05-01", "date"),
        ("/api/conversion/geo/?geo_id=x", "geo_id"),
        ("/api/conversion/geo/?overall=perhaps", "overall"),
        ("/api/conversion/daily/?date_from=0.5", "date_from"),
        ("/api/conversion/daily/?date_to=1700000000", "date_to"),
        ("/api/conversion/daily/?date_from=2024-05-03&date_to=2024-05-01", "date_from"),
        ("/api/conversion/daily/?ordering=events", "ordering"),
        ("/api/conversion/requests/0/", "request_id"),
    ],
)
def test_mart_query_errors_name_the_field(client, db, admin, url, field) -> None:
    resp = client.get(url, headers=admin.headers)
    assert resp.status_code == 400 and field in resp.json(), resp.json()
