"""SFTP exports and dialing: do-not-call numbers are left out unless include_dnc, and
callable_now is decided when the export runs (a real Dagster run, real SFTP)."""

from __future__ import annotations

import csv
import io

from models.tables import DncEntry
from sensors.job_requests import sftp_export_requests_sensor
from tests.dagster.conftest import Harness
from tests.dagster.test_job_requests import _insert_job


def _export(harness: Harness, project_id: int, filters: dict, name: str) -> set[str]:  # type: ignore[type-arg]
    job_id = _insert_job(
        harness, job_type="export", project_id=project_id,
        params={"filters": filters, "name": name},
    )  # fmt: skip
    [request] = harness.tick(sftp_export_requests_sensor).run_requests
    assert harness.execute(request).success
    job = harness.job(job_id)
    assert job["status"] == "completed", job
    # Each project has its own outbox (models/sftp_layout.py): outbox/<project code>/<name>.csv
    return {r["phone_number"] for r in csv.DictReader(io.StringIO(harness.read(job["file_path"])))}


def test_sftp_export_leaves_dnc_out_and_applies_callable_now(
    harness: Harness, factory, session
) -> None:
    project = factory.project(code="dialexp")
    factory.number(project, "+79160000001", timezone="Europe/Moscow", timezone_source="registry")
    factory.number(project, "+79160000002", timezone="Europe/Moscow", timezone_source="registry")
    factory.number(project, "+79990000001", timezone_source="unknown")
    session.add(DncEntry(project_id=project.id, phone_number="+79160000002", reason="asked"))
    session.commit()
    assert _export(harness, project.id, {}, "all") == {"+79160000001", "+79990000001"}
    assert "+79160000002" in _export(harness, project.id, {"include_dnc": True}, "with_dnc")
    # Unknown zones are never callable (default policy); DNC never either.
    not_now = _export(harness, project.id, {"callable_now": False, "include_dnc": True}, "no")
    assert {"+79990000001", "+79160000002"} <= not_now
    now = _export(harness, project.id, {"callable_now": True}, "yes")
    assert now <= {"+79160000001"} and not now & not_now
