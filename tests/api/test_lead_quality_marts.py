"""The lead quality marts through the API after a real dbt build: a manager sees only their
projects' rows (never the all-projects row), an admin sees everything."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from tests.api.test_imports_api import drop_marts
from tests.dbt.conftest import run_dbt


def _bulk(api, actor, project_id: int, provider_id: int, numbers: list[str]) -> int:  # type: ignore[no-untyped-def]
    resp = api.post(
        "/api/phone-numbers/bulk/",
        json={"project_id": project_id, "provider_id": provider_id, "numbers": numbers},
        headers=actor.headers,
    )
    assert resp.status_code == 200, resp.text
    return int(resp.json()["load_id"])


def test_marts_through_the_api_respect_scope(
    client,
    admin,
    manager,
    other_manager,
    factory,
    db,
    database_url: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    mine = factory.project(members=[manager.user])
    theirs = factory.project(code="secret-camp", members=[other_manager.user])
    vendor = factory.provider()
    my_load = _bulk(client, manager, mine.id, vendor.id, ["+79160000001", "+79160000002", "x"])
    their_load = _bulk(client, other_manager, theirs.id, vendor.id, ["+79160000009"])
    with db.begin() as conn:
        conn.execute(
            text(
                "UPDATE phone_numbers SET status = 'success', call_attempts = 2, "
                "last_call_at = now() WHERE phone_number = '+79160000001'"
            )
        )
    assert client.patch(
        f"/api/imports/{my_load}/", json={"lead_cost": 10}, headers=manager.headers
    ).status_code == 200  # fmt: skip
    result = run_dbt(database_url, tmp_path / "dbt", "build")
    # Ids restart with each test's truncation: no later test may read this run's rows.
    request.addfinalizer(lambda: drop_marts(db))
    assert result.returncode == 0, result.stdout[-4000:]

    detail = client.get(f"/api/imports/{my_load}/", headers=manager.headers).json()
    q = detail["quality"]
    assert (q["numbers"], q["dialled_numbers"], q["success_numbers"]) == (2, 1, 1)
    assert (q["dialled_share"], q["reached_share"], q["conversion_rate"]) == (50.0, 50.0, 100.0)
    assert (q["attempts_per_success"], q["median_hours_to_first_call"]) == (2.0, 0.0)

    url = f"/api/providers/{vendor.id}/quality/"
    mine_view = client.get(url, headers=manager.headers).json()
    assert mine_view["computed"] is True and mine_view["overall"] is None
    assert [r["project_id"] for r in mine_view["by_project"]] == [mine.id]
    assert {r["project_id"] for r in mine_view["by_geo"]} == {mine.id}
    assert {r["project_id"] for r in mine_view["cohorts"]} == {mine.id}
    row = mine_view["by_project"][0]
    assert (row["rows_read"], row["invalid"], row["invalid_share"]) == (3, 1, 33.33)
    assert (row["lead_cost"], row["cost_per_success"]) == (10.0, 10.0)
    assert "secret-camp" not in str(mine_view) and str(their_load) not in str(
        [r.get("load_id") for r in mine_view["by_project"]]
    )
    assert client.get(f"/api/imports/{their_load}/", headers=manager.headers).status_code == 404

    everything = client.get(url, headers=admin.headers).json()
    assert {r["project_id"] for r in everything["by_project"]} == {mine.id, theirs.id}
    overall = everything["overall"]
    assert overall["project_id"] is None and overall["loads"] == 2 and overall["numbers"] == 3
    one = client.get(url, params={"project_id": mine.id}, headers=admin.headers).json()
    assert one["overall"] is None and [r["project_id"] for r in one["by_project"]] == [mine.id]
