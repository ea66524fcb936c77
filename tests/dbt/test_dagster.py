"""The dbt models as Dagster assets, run for real: a run writes a snapshot and runs the dbt tests
as asset checks; an SFTP import triggers the refresh sensor; a conversion request goes from a
pending row to a new snapshot through its sensor. In-process runs on a real instance, real dbt,
real SFTP server."""

from __future__ import annotations

from typing import Any

from dagster import AssetKey, DagsterEventType, build_run_status_sensor_context
from sqlalchemy import text

from orchestration.assets.dbt import (
    REFRESH_JOB_NAME,
    conversion_definitions,
    numbase_dbt_models,
)
from sensors.conversion_requests import build_conversion_request_failure_sensor
from sensors.inbox import sftp_inbox_sensor
from tests.dagster.conftest import Harness, csv_bytes, phones


def snapshots(h: Harness, project_id: int) -> list[dict[str, Any]]:
    return h.rows(
        "SELECT * FROM project_conversions WHERE project_id = :p ORDER BY calculated_at",
        p=project_id,
    )


def sensor(h: Harness, name: str) -> Any:
    return h.defs.get_sensor_def(name)


def run_job(h: Harness, job_name: str, request: Any = None) -> Any:
    return h.defs.resolve_job_def(job_name).execute_in_process(
        run_config=request.run_config if request else None,
        tags=dict(request.tags) if request else None,
        instance=h.instance,
        raise_on_error=False,
    )


def test_wiring() -> None:
    keys = {k.to_user_string() for k in numbase_dbt_models.keys}
    assert {
        "staging/stg_phone_numbers",
        "staging/int_phone_number_rollup",
        "fct_project_conversion",
        "fct_project_conversion_current",
        "fct_provider_conversion",
        "fct_provider_conversion_overall",
        "fct_geo_conversion",
        "fct_geo_conversion_overall",
        "fct_daily_call_outcomes",
    } <= keys
    # The dbt source phone_numbers is the SFTP import asset itself.
    deps = numbase_dbt_models.asset_deps[AssetKey(["staging", "stg_phone_numbers"])]
    assert deps == {AssetKey(["phone_numbers"])}
    checks = {c.name for c in numbase_dbt_models.check_specs}
    assert "counts_add_up_fct_project_conversion_current_" in checks
    assert len(checks) > 40
    defs = conversion_definitions("7 * * * *")
    [schedule] = defs.schedules or []
    assert schedule.cron_schedule == "7 * * * *" and schedule.job_name == REFRESH_JOB_NAME
    default = conversion_definitions()
    assert [s.cron_schedule for s in default.schedules or []] == ["*/15 * * * *"]


def test_run_writes_snapshot_and_import_triggers_refresh(harness: Harness, factory) -> None:
    h = harness
    project = factory.project(code="acme")
    factory.number(project, status="success", call_attempts=2)
    factory.number(project)
    factory.number(project)
    after_import = sensor(h, "conversion_after_import_sensor")
    h.tick(after_import)  # earlier tests' imports on this instance: only sets the cursor

    result = run_job(h, REFRESH_JOB_NAME)
    assert result.success
    materialized = {m.asset_key for m in result.get_asset_materialization_events()}
    assert materialized == set(numbase_dbt_models.keys)
    checks = result.get_asset_check_evaluations()
    assert len(checks) > 40 and all(c.passed for c in checks)
    [first] = snapshots(h, project.id)
    assert (first["total_numbers"], first["processed_numbers"], first["call_attempts"]) == (3, 1, 2)

    # An SFTP import lands 5 more numbers...
    h.upload("inbox/acme/more.csv", csv_bytes([["phone"], *[[p] for p in phones(5, 500)]]))
    h.tick(sftp_inbox_sensor)
    [import_request] = h.tick(sftp_inbox_sensor).run_requests
    assert h.execute(import_request).success
    # ...and the sensor on the import asset asks for exactly one refresh.
    tick = h.tick(after_import)
    [refresh] = tick.run_requests
    assert refresh.run_key.startswith("conversion_after_import:")
    assert run_job(h, REFRESH_JOB_NAME, refresh).success
    latest = snapshots(h, project.id)[-1]
    assert latest["calculated_at"] > first["calculated_at"]
    assert (latest["total_numbers"], latest["processed_numbers"]) == (8, 1)
    assert latest["conversion_rate"] == 100
    assert not h.tick(after_import).run_requests  # nothing new since


def test_conversion_request_sensor_turns_rows_into_snapshots(harness: Harness, factory) -> None:
    h = harness
    # An earlier refresh (on an empty base, so this test does not depend on which test ran
    # before it): the request's run must bring every mart up to date, not just the snapshot.
    assert run_job(h, REFRESH_JOB_NAME).success
    live = factory.project(code="live")
    other = factory.project(code="other")
    gone = factory.project(code="gone")
    factory.number(live, status="failed", call_attempts=1)
    factory.number(live, status="success", call_attempts=1)
    with h.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE projects SET is_deleted = true, deleted_at = now(), status = 'deleted'"
                " WHERE id = :p"
            ),
            {"p": gone.id},
        )
        ids = [
            conn.execute(
                text("INSERT INTO conversion_requests (project_id) VALUES (:p) RETURNING id"),
                {"p": p},
            ).scalar_one()
            for p in (live.id, gone.id, None)
        ]
    requests_sensor = sensor(h, "conversion_request_sensor")
    tick = h.tick(requests_sensor)
    by_key = {r.run_key: r for r in tick.run_requests}
    assert set(by_key) == {f"conversion_request:{i}" for i in ids}
    live_req, gone_req, all_req = (by_key[f"conversion_request:{i}"] for i in ids)
    # One job for every request: a project's request refreshes every mart too.
    assert live_req.job_name == all_req.job_name == gone_req.job_name == REFRESH_JOB_NAME
    assert not h.tick(requests_sensor).run_requests  # the cursor moved past them

    result = run_job(h, REFRESH_JOB_NAME, live_req)
    assert result.success
    row = h.rows("SELECT * FROM conversion_requests WHERE id = :i", i=ids[0])[0]
    assert row["status"] == "completed" and row["error_log"] is None
    assert row["dagster_run_id"] == result.run_id
    assert row["started_at"] <= row["completed_at"]
    [snap] = snapshots(h, live.id)
    assert (snap["processed_numbers"], snap["success_numbers"], snap["conversion_rate"]) == (
        2,
        1,
        50,
    )
    assert snap["calculated_at"] >= row["started_at"]
    assert snapshots(h, other.id) == []  # a one-project request snapshots that project only
    # The provider and geo marts and the daily calls were rebuilt by the same run (they were
    # empty after the first refresh).
    [by_provider] = h.rows(
        "SELECT * FROM analytics.fct_provider_conversion WHERE project_id = :p", p=live.id
    )
    assert (by_provider["total_numbers"], by_provider["success_numbers"]) == (2, 1)
    assert by_provider["calculated_at"] == snap["calculated_at"]
    [by_geo] = h.rows("SELECT * FROM analytics.fct_geo_conversion WHERE project_id = :p", p=live.id)
    assert by_geo["calculated_at"] == snap["calculated_at"]
    materialized = {m.asset_key for m in result.get_asset_materialization_events()}
    assert materialized == set(numbase_dbt_models.keys)

    failed = run_job(h, REFRESH_JOB_NAME, gone_req)
    assert not failed.success
    row = h.rows("SELECT * FROM conversion_requests WHERE id = :i", i=ids[1])[0]
    assert row["status"] == "failed" and f"project {gone.id} is deleted" in row["error_log"]
    assert row["dagster_run_id"] == failed.run_id

    # The backstop: a run that fails before its op could record anything.
    with h.engine.begin() as conn:
        conn.execute(text("UPDATE conversion_requests SET status = 'running' WHERE id = :i"),
                     {"i": ids[1]})  # fmt: skip
    event = next(e for e in failed.all_events if e.event_type == DagsterEventType.PIPELINE_FAILURE)
    backstop = build_conversion_request_failure_sensor([])
    with build_run_status_sensor_context(
        sensor_name=backstop.name,
        dagster_instance=h.instance,
        dagster_run=failed.dagster_run,
        dagster_event=event,
    ) as ctx:
        backstop(ctx.for_run_failure())
    assert h.rows("SELECT status FROM conversion_requests WHERE id = :i", i=ids[1])[0] == {
        "status": "failed"
    }
