"""Do-not-call drop folders over a real SFTP server and real Dagster runs: a global file and a
project file are listed and archived, the number-import sensor leaves them alone, a file for an
unknown project is rejected, an unreadable file changes nothing."""

from __future__ import annotations

from typing import Any

from dagster import RunRequest

from models.tables import AuditLog, DncEntry
from sensors.dnc_inbox import DNC_JOB, DNC_PARTITIONS, dnc_inbox_sensor
from sensors.inbox import sftp_inbox_sensor
from tests.dagster.conftest import Harness, csv_bytes


def _settled_requests(harness: Harness) -> list[RunRequest]:
    harness.tick(dnc_inbox_sensor)  # first sight: wait for the file to settle
    return list(harness.tick(dnc_inbox_sensor).run_requests)


def _run(harness: Harness, request: RunRequest) -> Any:
    harness.instance.add_dynamic_partitions(DNC_PARTITIONS, [request.partition_key])
    return harness.defs.resolve_job_def(DNC_JOB).execute_in_process(
        run_config=request.run_config, partition_key=request.partition_key,
        instance=harness.instance, raise_on_error=False,
    )  # fmt: skip


def test_global_and_project_files_are_listed_and_archived(
    harness: Harness, factory, session
) -> None:
    project = factory.project(code="dncproj")
    regulator = csv_bytes([["phone"], ["+79160000001"], ["8 916 000-00-02"], ["junk"]])
    harness.upload("inbox/_dnc/regulator.csv", regulator)
    optouts = csv_bytes([["Телефон"], ["+79160000003"]], delimiter=";", encoding="cp1251")
    harness.upload("inbox/dncproj/_dnc/optouts.csv", optouts)
    # The number-import sensor does not take them for number files.
    harness.tick(sftp_inbox_sensor)
    assert not harness.tick(sftp_inbox_sensor).run_requests
    requests = _settled_requests(harness)
    assert sorted(r.partition_key for r in requests) == [
        "inbox/_dnc/regulator.csv", "inbox/dncproj/_dnc/optouts.csv",
    ]  # fmt: skip
    for request in requests:
        assert _run(harness, request).success
    entries = {(e.project_id, e.phone_number, e.source) for e in session.query(DncEntry)}
    assert entries == {
        (None, "+79160000001", "sftp"), (None, "+79160000002", "sftp"),
        (project.id, "+79160000003", "sftp"),
    }  # fmt: skip
    assert harness.exists("processed/_dnc/regulator.csv")
    assert harness.exists("processed/dncproj/_dnc/optouts.csv")
    assert not harness.exists("inbox/_dnc/regulator.csv")
    audits = session.query(AuditLog).filter(AuditLog.action == "dnc_bulk_add").all()
    assert sorted(a.changes["added"] for a in audits) == [1, 2]
    assert {a.actor for a in audits} == {"system:dagster"}
    assert not harness.tick(dnc_inbox_sensor).run_requests  # nothing left


def test_unknown_project_and_unreadable_files_are_rejected(
    harness: Harness, factory, session
) -> None:
    factory.project(code="dncok")
    harness.upload("inbox/nosuch/_dnc/x.csv", csv_bytes([["phone"], ["+79160000001"]]))
    harness.upload("inbox/dncok/_dnc/bad.csv", b"name,city\nx,y\n")  # no phone column
    requests = _settled_requests(harness)
    assert harness.exists("rejected/nosuch/_dnc/x.csv")
    assert "no live project" in harness.read("rejected/nosuch/_dnc/x.csv.error.txt")
    [request] = requests
    assert not _run(harness, request).success
    assert harness.exists("rejected/dncok/_dnc/bad.csv")
    assert session.query(DncEntry).count() == 0
