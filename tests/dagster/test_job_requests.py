"""Durable requests: a pending sftp_jobs row (as the API inserts it) -> sensor -> run -> done."""

from __future__ import annotations

import csv
import io
import json

from dagster import DagsterEventType, build_run_status_sensor_context
from sqlalchemy import text

from sensors.job_requests import sftp_export_requests_sensor, sftp_import_requests_sensor
from sensors.run_status import sftp_job_failure_sensor
from tests.dagster.conftest import Harness, csv_bytes, phones


def _insert_job(h: Harness, **values) -> int:
    values.setdefault("params", {})
    values["params"] = json.dumps(values["params"])
    cols = ", ".join(values)
    marks = ", ".join(f":{k}" for k in values)
    with h.engine.begin() as conn:
        return int(
            conn.execute(
                text(f"INSERT INTO sftp_jobs ({cols}) VALUES ({marks}) RETURNING id"), values
            ).scalar_one()
        )


def test_requested_import_goes_pending_to_completed(harness: Harness, factory) -> None:
    project = factory.project(code="req")
    harness.upload(
        "uploads/vendor.csv",
        csv_bytes([["Контакт", "Имя"], *[[p, "x"] for p in phones(250)]], delimiter=";"),
    )
    job_id = _insert_job(
        harness,
        job_type="import",
        project_id=project.id,
        file_path="/uploads/vendor.csv",
        params={"column_map": {"phone": "Контакт", "name": "Имя"}},
    )
    assert harness.job(job_id)["status"] == "pending"
    [request] = harness.tick(sftp_import_requests_sensor).run_requests
    assert request.run_key == f"sftp_job:{job_id}"
    assert request.partition_key == "uploads/vendor.csv"
    result = harness.execute(request)
    assert result.success
    job = harness.job(job_id)
    assert (job["status"], job["records_count"]) == ("completed", 250)
    assert harness.count(project.id) == 250
    assert harness.scalar("SELECT attributes->>'name' FROM phone_numbers LIMIT 1") == "x"
    assert harness.exists("processed/uploads/vendor.csv")


def test_requested_export_goes_pending_to_completed(harness: Harness, factory) -> None:
    project = factory.project(code="exp")
    other = factory.project(code="other")
    for i in range(30):
        factory.number(project, f"+7916555{i:04d}", status="new" if i % 3 else "success")
    factory.number(other, "+79165550000")
    job_id = _insert_job(
        harness,
        job_type="export",
        project_id=project.id,
        params={"filters": {"status": ["new"], "project_id": other.id}, "name": "May leads"},
    )
    [request] = harness.tick(sftp_export_requests_sensor).run_requests
    assert request.run_key == f"sftp_job:{job_id}"
    result = harness.execute(request)
    assert result.success
    job = harness.job(job_id)
    assert job["status"] == "completed" and job["records_count"] == 20
    assert job["file_path"] == "outbox/exp/May_leads.csv"
    rows = list(csv.DictReader(io.StringIO(harness.read("outbox/exp/May_leads.csv"))))
    assert len(rows) == 20 and {r["status"] for r in rows} == {"new"}
    assert {r["project_id"] for r in rows} == {str(project.id)}  # the job's project wins
    assert not any(p.name.endswith(".part") for p in (harness.root / "outbox/exp").iterdir())


def test_bad_requests_fail_without_a_run(harness: Harness, factory) -> None:
    import datetime as dt

    project = factory.project(code="badreq")
    gone = factory.project(
        code="gonereq", status="deleted", is_deleted=True, deleted_at=dt.datetime.now(dt.UTC)
    )
    a = _insert_job(harness, job_type="import", project_id=project.id, file_path="../etc/passwd")
    b = _insert_job(harness, job_type="import", project_id=gone.id, file_path="inbox/x.csv")
    c = _insert_job(
        harness, job_type="export", project_id=project.id, params={"filters": {"status": ["ok"]}}
    )
    assert not harness.tick(sftp_import_requests_sensor).run_requests
    assert not harness.tick(sftp_export_requests_sensor).run_requests
    assert "outside the SFTP root" in harness.job(a)["error_log"]
    assert "is deleted" in harness.job(b)["error_log"]
    assert "status 'ok'" in harness.job(c)["error_log"]
    assert {harness.job(i)["status"] for i in (a, b, c)} == {"failed"}


def test_missing_file_fails_the_job_and_failure_sensor_is_the_backstop(
    harness: Harness, factory
) -> None:
    project = factory.project(code="miss")
    job_id = _insert_job(
        harness, job_type="import", project_id=project.id, file_path="uploads/none.csv"
    )
    [request] = harness.tick(sftp_import_requests_sensor).run_requests
    result = harness.execute(request)
    assert not result.success
    job = harness.job(job_id)
    assert job["status"] == "failed" and "none.csv" in job["error_log"]

    # A run that dies before the asset can record anything: the sensor marks the job.
    job2 = _insert_job(
        harness, job_type="import", project_id=project.id, file_path="uploads/other.csv"
    )
    [req2] = harness.tick(sftp_import_requests_sensor).run_requests
    req2 = req2.with_replaced_attrs(partition_key="uploads/none.csv")  # a mismatched run
    failed = harness.execute(req2)
    assert not failed.success and harness.job(job2)["status"] == "pending"
    event = next(e for e in failed.all_events if e.event_type == DagsterEventType.PIPELINE_FAILURE)
    with build_run_status_sensor_context(
        sensor_name="sftp_job_failure_sensor",
        dagster_instance=harness.instance,
        dagster_run=failed.dagster_run,
        dagster_event=event,
    ) as ctx:
        sftp_job_failure_sensor(ctx.for_run_failure())
    job = harness.job(job2)
    assert job["status"] == "failed" and "not partition" in job["error_log"]
    assert job["dagster_run_id"] == failed.run_id


def test_exports_of_two_projects_never_share_a_file(harness: Harness, factory) -> None:
    """Project X exports under the name of project Y's completed export: Y's file stays Y's;
    a second export to a taken name (inserted behind the API's 409) fails, the file intact."""
    x, y = factory.project(code="x"), factory.project(code="y")
    factory.number(x, "+79161110001")
    factory.number(y, "+79162220002")

    def export(project_id: int) -> tuple[int, bool]:
        job_id = _insert_job(
            harness, job_type="export", project_id=project_id, params={"name": "leads"}
        )
        [request] = harness.tick(sftp_export_requests_sensor).run_requests
        return job_id, harness.execute(request).success

    y_job, ok = export(y.id)
    assert ok and harness.job(y_job)["file_path"] == "outbox/y/leads.csv"
    y_file = harness.read("outbox/y/leads.csv")
    x_job, ok = export(x.id)
    assert ok and harness.job(x_job)["file_path"] == "outbox/x/leads.csv"
    assert harness.read("outbox/y/leads.csv") == y_file and "+79162220002" in y_file
    assert "+79161110001" in harness.read("outbox/x/leads.csv")

    x_file = harness.read("outbox/x/leads.csv")
    factory.number(x, "+79161110003")
    again, ok = export(x.id)
    assert not ok
    job = harness.job(again)
    assert job["status"] == "failed" and "not overwritten" in job["error_log"]
    assert harness.read("outbox/x/leads.csv") == x_file
    assert harness.job(x_job)["status"] == "completed"


def test_an_export_never_replaces_a_file_it_did_not_write(harness: Harness, factory) -> None:
    project = factory.project(code="own")
    harness.upload("outbox/own/report.csv", b"someone else's file\n")
    job_id = _insert_job(
        harness, job_type="export", project_id=project.id, params={"name": "report"}
    )
    [request] = harness.tick(sftp_export_requests_sensor).run_requests
    assert not harness.execute(request).success
    assert harness.read("outbox/own/report.csv") == "someone else's file\n"
    assert "already exists" in harness.job(job_id)["error_log"]


def test_export_whose_rename_landed_before_a_drop_completes_on_retry(
    harness: Harness, factory
) -> None:
    """An attempt renamed its file into place, then lost the connection before completing the
    job: the next attempt finds its own file (noted as published, no .part left) and completes
    the job instead of failing it for a name clash."""
    project = factory.project(code="pub")
    harness.upload("outbox/pub/done.csv", b"phone_number\n+79160000001\n")
    job_id = _insert_job(
        harness, job_type="export", project_id=project.id, params={"name": "done"},
    )  # fmt: skip
    with harness.engine.begin() as conn:
        conn.execute(
            text("UPDATE sftp_jobs SET stats = CAST(:s AS jsonb) WHERE id = :i"),
            {"s": json.dumps({"published": {"path": "outbox/pub/done.csv", "rows": 1,
                                             "bytes": 27}}), "i": job_id},
        )  # fmt: skip
    [request] = harness.tick(sftp_export_requests_sensor).run_requests
    assert harness.execute(request).success
    job = harness.job(job_id)
    assert (job["status"], job["records_count"]) == ("completed", 1)
    assert harness.read("outbox/pub/done.csv") == "phone_number\n+79160000001\n"
