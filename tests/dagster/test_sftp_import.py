"""SFTP imports end to end: live SFTP server, sensor ticks, real Dagster runs, real PostgreSQL."""

from __future__ import annotations

from sensors.inbox import sftp_inbox_sensor
from tests.dagster.conftest import Harness, csv_bytes, phones


def _drive(h: Harness) -> list:
    """Tick until the inbox sensor asks for runs (at most 3 ticks), then run them."""
    results = []
    for _ in range(3):
        out = h.tick(sftp_inbox_sensor)
        if out.run_requests:
            results = [h.execute(r) for r in out.run_requests]
            break
    return results


def test_csv_lands_with_exact_counts(harness: Harness, factory) -> None:
    project = factory.project(code="acme")
    provider = factory.provider(code="leadco", projects=[project])
    good = phones(500)
    rows = [["phone", "name"]]
    rows += [[p, f"client {i}"] for i, p in enumerate(good)]
    rows += [["8 (916) 000-00-01", "dup of line 3"], ["not a phone", "x"], ["", "empty"]]
    harness.upload("inbox/acme/leadco/may.csv", csv_bytes(rows))

    first = harness.tick(sftp_inbox_sensor)
    assert not first.run_requests  # seen once: not yet known to be still
    second = harness.tick(sftp_inbox_sensor)
    assert [r.partition_key for r in second.run_requests] == ["inbox/acme/leadco/may.csv"]
    request = second.run_requests[0]
    assert request.run_key.startswith("inbox:inbox/acme/leadco/may.csv:")

    result = harness.execute(request)
    assert result.success
    assert harness.count(project.id) == 500
    mat = result.asset_materializations_for_node("phone_numbers")[0]
    meta = {k: v.value for k, v in mat.metadata.items()}
    assert meta["rows_read"] == 503
    assert meta["inserted"] == 500
    assert meta["duplicates_in_file"] == 1
    assert meta["invalid"] == 2
    job = harness.job(int(request.tags["numbase/sftp_job_id"]))
    assert job["status"] == "completed" and job["records_count"] == 500
    assert job["dagster_run_id"] == result.run_id
    assert job["started_at"] and job["completed_at"]
    assert job["stats"]["invalid"] == 2 and job["provider_id"] == provider.id
    attrs = harness.scalar(
        "SELECT attributes->>'name' FROM phone_numbers WHERE phone_number = :p", p=good[7]
    )
    assert attrs == "client 7"
    assert harness.exists("processed/acme/leadco/may.csv")
    assert not harness.exists("inbox/acme/leadco/may.csv")
    report = harness.read(f"rejected/acme/leadco/may.csv.job{job['id']}.rejects.csv").splitlines()
    assert report[0] == "line,raw_value,reason"
    assert len(report) == 3 and "contains letters" in report[1]
    audit = harness.rows("SELECT actor, action FROM audit_log WHERE entity_id = :i", i=job["id"])
    assert [(a["actor"], a["action"]) for a in audit] == [
        ("system:dagster", "sftp_import.completed")
    ]


def _meta(result) -> dict:
    mat = result.asset_materializations_for_node("phone_numbers")[0]
    return {k: v.value for k, v in mat.metadata.items()}


def test_xlsx_lands_with_exact_counts(harness: Harness, factory, tmp_path) -> None:
    from openpyxl import Workbook

    project = factory.project(code="xl")
    wb = Workbook()
    ws = wb.active
    ws.append(["ФИО", "Телефон", "Город"])
    for i in range(300):
        ws.append([f"Клиент {i}", 79161230000 + i, "Москва"])  # stored as numbers
    ws.append(["Текст", "8 916 123-00-00", "dup"])  # same as the first row
    ws.append(["Пусто", None, None])
    path = tmp_path / "leads.xlsx"
    wb.save(path)
    harness.upload("inbox/xl/leads.xlsx", path.read_bytes())

    [result] = _drive(harness)
    assert result.success
    assert harness.count(project.id) == 300
    meta = _meta(result)
    assert (meta["rows_read"], meta["inserted"], meta["duplicates_in_file"], meta["invalid"]) == (
        302, 300, 1, 1,
    )  # fmt: skip
    row = harness.rows("SELECT attributes FROM phone_numbers WHERE phone_number = '+79161230005'")[
        0
    ]
    assert row["attributes"] == {"ФИО": "Клиент 5", "Город": "Москва"}


def test_file_uploaded_in_two_halves_is_imported_once_when_whole(harness: Harness, factory):
    project = factory.project(code="halves")
    data = csv_bytes([["phone"], *[[p] for p in phones(2000)]])
    cut = len(data) // 2
    path = "inbox/halves/big.csv"
    harness.upload(path, data[:cut])
    assert not harness.tick(sftp_inbox_sensor).run_requests  # first sight
    harness.append(path, data[cut:])
    assert not harness.tick(sftp_inbox_sensor).run_requests  # it grew: not still yet
    requests = harness.tick(sftp_inbox_sensor).run_requests
    assert len(requests) == 1
    assert not harness.tick(sftp_inbox_sensor).run_requests  # never asked twice
    result = harness.execute(requests[0])
    assert result.success and _meta(result)["rows_read"] == 2000
    assert harness.count(project.id) == 2000
    assert harness.scalar("SELECT count(*) FROM sftp_jobs") == 1


def test_temporary_names_are_ignored(harness: Harness, factory) -> None:
    factory.project(code="tmpn")
    for name in ("a.csv.part", "b.tmp", ".hidden.csv", "c.filepart"):
        harness.upload(f"inbox/tmpn/{name}", b"phone\n+79161234567\n")
    for _ in range(3):
        assert not harness.tick(sftp_inbox_sensor).run_requests
    assert harness.scalar("SELECT count(*) FROM sftp_jobs") == 0


def test_same_file_dropped_again_is_not_loaded_twice(harness: Harness, factory) -> None:
    project = factory.project(code="again")
    data = csv_bytes([["phone"], *[[p] for p in phones(400)]])
    harness.upload("inbox/again/list.csv", data)
    [first] = _drive(harness)
    assert first.success and harness.count(project.id) == 400

    # Re-executing the very same job (a retry or a UI re-run) is a no-op.
    job_id = int(first.dagster_run.tags["numbase/sftp_job_id"])
    rerun = harness.execute(_request_for(first))
    assert rerun.success and _meta(rerun)["skipped"] == "already completed"

    # The same bytes delivered again (a later mtime) are the same delivery: archived, no run.
    harness.upload("inbox/again/list.csv", data)
    with harness.sftp.session() as s:
        s.sftp.utime("inbox/again/list.csv", (2_000_000_000, 2_000_000_000))
    assert _drive(harness) == []
    assert harness.count(project.id) == 400
    assert harness.scalar("SELECT count(*) FROM sftp_jobs") == 1
    assert harness.job(job_id)["records_count"] == 400
    assert not harness.exists("inbox/again/list.csv")
    assert harness.exists("processed/again/list.csv")
    assert harness.exists(f"processed/again/list.job{job_id}.csv")


def test_imported_bytes_seen_again_are_archived_without_a_run(harness: Harness, factory) -> None:
    """Same path, size and mtime as a completed import (a failed archive move, or the same
    upload again within one second): archived, not loaded again, no new job."""
    project = factory.project(code="leftover")
    data = csv_bytes([["phone"], *[[p] for p in phones(10)]])
    harness.upload("inbox/leftover/a.csv", data)
    with harness.sftp.session() as s:
        s.sftp.utime("inbox/leftover/a.csv", (1_700_000_000, 1_700_000_000))
    [first] = _drive(harness)
    assert first.success and harness.exists("processed/leftover/a.csv")
    harness.upload("inbox/leftover/a.csv", data)
    with harness.sftp.session() as s:
        s.sftp.utime("inbox/leftover/a.csv", (1_700_000_000, 1_700_000_000))
    for _ in range(3):
        assert not harness.tick(sftp_inbox_sensor).run_requests
    assert not harness.exists("inbox/leftover/a.csv")
    assert harness.scalar("SELECT count(*) FROM sftp_jobs") == 1
    assert harness.count(project.id) == 10


def _request_for(result):
    from dagster import RunRequest

    run = result.dagster_run
    return RunRequest(
        partition_key=run.tags["dagster/partition"],
        run_config=run.run_config,
        tags={"numbase/sftp_job_id": run.tags["numbase/sftp_job_id"]},
    )


def test_partition_materialised_from_the_ui_creates_its_own_job(harness: Harness, factory) -> None:
    """No sensor, no config: `materialize` of a partition maps it by the folder convention."""
    from dagster import materialize

    from orchestration.assets.imports import phone_numbers

    project = factory.project(code="ui")
    harness.upload("inbox/ui/hand.csv", csv_bytes([["msisdn"], *[[p] for p in phones(42)]]))
    harness.instance.add_dynamic_partitions("sftp_inbox_files", ["inbox/ui/hand.csv"])
    result = materialize(
        [phone_numbers],
        partition_key="inbox/ui/hand.csv",
        resources=harness.resources,
        instance=harness.instance,
    )
    assert result.success and harness.count(project.id) == 42
    [job] = harness.rows("SELECT status, params, records_count FROM sftp_jobs")
    assert (job["status"], job["params"]["source"], job["records_count"]) == (
        "completed", "dagster-ui", 42,
    )  # fmt: skip


def _materialize(h: Harness, path: str):
    from dagster import materialize

    from orchestration.assets.imports import phone_numbers

    h.instance.add_dynamic_partitions("sftp_inbox_files", [path])
    return materialize(
        [phone_numbers], partition_key=path, resources=h.resources, instance=h.instance,
        raise_on_error=False,
    )  # fmt: skip


def _checks(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def test_rerunning_an_imported_partition_from_the_ui_reimports_the_archive(
    harness: Harness, factory
) -> None:
    """The data engineer's first instinct: materialise the partition again. The file is in
    processed/ by now; the archived copy is imported again, idempotently, and stays there."""
    project = factory.project(code="rerun")
    path = "inbox/rerun/list.csv"
    harness.upload(path, csv_bytes([["phone"], *[[p] for p in phones(30)]]))
    [first] = _drive(harness)
    assert first.success and _checks(first) == {"counts_add_up": True, "job_completed": True}
    first_job = harness.job(int(first.dagster_run.tags["numbase/sftp_job_id"]))

    again = _materialize(harness, path)
    assert again.success, again.get_step_failure_events()
    meta = _meta(again)
    assert (meta["inserted"], meta["already_present"]) == (0, 30)
    assert meta["read_from"] == "processed/rerun/list.csv"
    assert _checks(again) == {"counts_add_up": True, "job_completed": True}
    assert harness.count(project.id) == 30
    assert harness.job(first_job["id"])["status"] == "completed"  # the good import stays good
    assert harness.exists("processed/rerun/list.csv") and not harness.exists(path)
    jobs = harness.rows("SELECT status, params->>'source' AS source FROM sftp_jobs ORDER BY id")
    assert [(j["status"], j["source"]) for j in jobs] == [
        ("completed", "inbox"), ("completed", "dagster-ui"),
    ]  # fmt: skip


def test_ui_materialisation_of_a_file_that_is_nowhere_is_refused_up_front(
    harness: Harness, factory
) -> None:
    factory.project(code="nowhere")
    result = _materialize(harness, "inbox/nowhere/ghost.csv")
    assert not result.success
    [failure] = result.get_step_failure_events()
    assert "upload it again to inbox/nowhere/ghost.csv" in failure.step_failure_data.error.message
    assert harness.scalar("SELECT count(*) FROM sftp_jobs") == 0  # nothing turned red


def test_reexecuting_the_run_of_a_rejected_file_says_why_and_changes_nothing(
    harness: Harness, factory
) -> None:
    """Re-execute (same config) of a run whose file went to rejected/: refused up front with
    the reason, not a misleading FileNotFoundError; the job keeps its original error."""
    factory.project(code="rx")
    harness.upload("inbox/rx/a.csv", b"name\nIvan\n")
    [first] = _drive(harness)
    assert not first.success
    job_id = int(first.dagster_run.tags["numbase/sftp_job_id"])
    before = harness.job(job_id)
    assert before["file_path"] == "rejected/rx/a.csv"
    again = harness.execute(_request_for(first))
    assert not again.success
    [failure] = again.get_step_failure_events()
    assert "FileNotFoundError" not in failure.step_failure_data.error.message
    assert "rejected/rx/a.csv" in failure.step_failure_data.error.message
    after = harness.job(job_id)
    assert (after["status"], after["error_log"]) == ("failed", before["error_log"])
