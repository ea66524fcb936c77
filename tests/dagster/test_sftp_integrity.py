"""Whole file or nothing, content identity, and who may deliver: live SFTP server, real sensor
ticks, real Dagster runs, real PostgreSQL (issue 12, items 2, 3 and 5)."""

from __future__ import annotations

import time

import pytest

from sensors.inbox import sftp_inbox_sensor
from tests.dagster.conftest import Harness, csv_bytes, phones


def _requests(h: Harness, ticks: int = 3) -> list:
    for _ in range(ticks):
        out = h.tick(sftp_inbox_sensor)
        if out.run_requests:
            return list(out.run_requests)
    return []


def _cut_mid_line(data: bytes) -> bytes:
    cut = len(data) * 2 // 5
    while data[cut - 1 : cut] == b"\n":  # make sure the prefix ends inside a line
        cut += 1
    return data[:cut]


# --- item 2: a stalled upload ends whole or not at all -----------------------------------------


def test_stalled_upload_is_not_imported_until_it_is_whole(harness: Harness, factory) -> None:
    project = factory.project(code="stall")
    data = csv_bytes([["phone"], *[[p] for p in phones(3000)]])
    path = "inbox/stall/big.csv"
    harness.upload(path, _cut_mid_line(data))  # the vendor's client pauses here
    for _ in range(4):  # far longer than the settle time (0 s in tests)
        assert not harness.tick(sftp_inbox_sensor).run_requests
    assert harness.scalar("SELECT count(*) FROM sftp_jobs") == 0
    assert harness.count(project.id) == 0 and harness.exists(path)

    harness.upload(path, data)  # the upload resumes and completes
    [request] = _requests(harness)
    result = harness.execute(request)
    assert result.success
    assert harness.count(project.id) == 3000
    job = harness.job(int(request.tags["numbase/sftp_job_id"]))
    assert (job["status"], job["records_count"]) == ("completed", 3000)


def test_settle_time_is_waited_for(harness: Harness, factory, monkeypatch) -> None:
    monkeypatch.setenv("NUMBASE_SFTP_SETTLE_SECONDS", "2")
    factory.project(code="settle")
    harness.upload("inbox/settle/a.csv", csv_bytes([["phone"], *[[p] for p in phones(5)]]))
    started = time.monotonic()
    assert not harness.tick(sftp_inbox_sensor).run_requests
    assert not harness.tick(sftp_inbox_sensor).run_requests  # still, but not for 2 s yet
    time.sleep(max(0.0, 2.1 - (time.monotonic() - started)))
    assert len(harness.tick(sftp_inbox_sensor).run_requests) == 1


def test_incomplete_file_is_rejected_as_truncated_after_the_timeout(
    harness: Harness, factory, monkeypatch
) -> None:
    monkeypatch.setenv("NUMBASE_SFTP_INCOMPLETE_TIMEOUT_SECONDS", "1")
    project = factory.project(code="trunc")
    data = csv_bytes([["phone"], *[[p] for p in phones(500)]])
    path = "inbox/trunc/cut.csv"
    harness.upload(path, _cut_mid_line(data))
    assert not harness.tick(sftp_inbox_sensor).run_requests
    assert not harness.tick(sftp_inbox_sensor).run_requests
    time.sleep(1.1)
    assert not harness.tick(sftp_inbox_sensor).run_requests
    assert not harness.exists(path) and harness.exists("rejected/trunc/cut.csv")
    assert "truncated" in harness.read("rejected/trunc/cut.csv.error.txt")
    [job] = harness.rows("SELECT status, error_log, project_id FROM sftp_jobs")
    assert job["status"] == "failed" and "truncated" in job["error_log"]
    assert job["project_id"] == project.id  # the project's manager sees why
    assert harness.count(project.id) == 0


def test_truncated_xlsx_waits_and_is_never_imported(harness: Harness, factory, tmp_path) -> None:
    from openpyxl import Workbook

    project = factory.project(code="xlcut")
    wb = Workbook()
    for i in range(2000):
        wb.active.append([f"+7916{i:07d}"])
    wb.save(tmp_path / "a.xlsx")
    whole = (tmp_path / "a.xlsx").read_bytes()
    harness.upload("inbox/xlcut/a.xlsx", whole[: len(whole) // 2])
    for _ in range(3):
        assert not harness.tick(sftp_inbox_sensor).run_requests  # no zip directory yet
    # With a done-marker the sensor takes the vendor's word; the parser still refuses it.
    harness.upload("inbox/xlcut/a.xlsx.done", b"")
    [request] = _requests(harness, 1)
    result = harness.execute(request)
    assert not result.success
    assert harness.count(project.id) == 0
    assert harness.exists("rejected/xlcut/a.xlsx") and harness.exists("rejected/xlcut/a.xlsx.done")


def test_done_marker_imports_at_once_and_travels_with_the_file(harness: Harness, factory):
    project = factory.project(code="mark")
    # Without a final line break: the marker, not the line end, says the file is whole.
    body = b"phone\n" + b"\n".join(p.encode() for p in phones(50))
    harness.upload("inbox/mark/a.csv", body)
    harness.upload("inbox/mark/a.csv.done", b"")
    [request] = harness.tick(sftp_inbox_sensor).run_requests  # first sight is enough
    assert harness.execute(request).success
    assert harness.count(project.id) == 50
    assert harness.exists("processed/mark/a.csv") and harness.exists("processed/mark/a.csv.done")
    assert not harness.exists("inbox/mark/a.csv.done")

    # The folder uses markers now: a file without its marker waits, however still it is.
    harness.upload("inbox/mark/b.csv", csv_bytes([["phone"], *[[p] for p in phones(7, 100)]]))
    for _ in range(3):
        assert not harness.tick(sftp_inbox_sensor).run_requests
    harness.upload("inbox/mark/b.csv.done", b"")
    [request] = harness.tick(sftp_inbox_sensor).run_requests
    assert harness.execute(request).success
    assert harness.count(project.id) == 57


def test_file_changed_while_downloading_is_not_imported(harness: Harness, factory) -> None:
    """The sensor judged it whole, then it grew before the run downloaded it: no prefix."""
    project = factory.project(code="grow")
    first = csv_bytes([["phone"], *[[p] for p in phones(10)]])
    harness.upload("inbox/grow/a.csv", first)
    [request] = _requests(harness)
    harness.append("inbox/grow/a.csv", b"+7916")  # the vendor resumes mid-line
    result = harness.execute(request)
    assert not result.success
    assert harness.count(project.id) == 0 and harness.exists("inbox/grow/a.csv")
    job = harness.job(int(request.tags["numbase/sftp_job_id"]))
    assert job["status"] == "failed" and "truncated" in job["error_log"]


# --- item 3: a delivery is its content -----------------------------------------------------


def _same_shape(numbers: list[str], bad: str) -> bytes:
    return csv_bytes([["phone"], *[[p] for p in numbers], [bad]])


def test_new_bytes_under_the_same_name_size_and_mtime_are_imported(harness: Harness, factory):
    project = factory.project(code="redo")
    path = "inbox/redo/list.csv"
    first = _same_shape(phones(100), "not a phone")
    second = _same_shape(phones(100, 5000), "not a phono")  # a corrected re-delivery
    assert len(first) == len(second)
    job_ids = []
    for data in (first, second):
        harness.upload(path, data)
        with harness.sftp.session() as s:
            s.sftp.utime(path, (1_700_000_000, 1_700_000_000))  # `sftp put -p`, WinSCP
        [request] = _requests(harness)
        result = harness.execute(request)
        assert result.success
        job_ids.append(int(request.tags["numbase/sftp_job_id"]))
    assert harness.count(project.id) == 200
    jobs = [harness.job(i) for i in job_ids]
    assert [j["records_count"] for j in jobs] == [100, 100]
    assert jobs[0]["content_sha256"] != jobs[1]["content_sha256"]
    assert all(len(j["content_sha256"]) == 64 for j in jobs)
    # Neither the reject report nor the archived file of the later delivery replaced the first.
    reports = [harness.read(f"rejected/redo/list.csv.job{i}.rejects.csv") for i in job_ids]
    assert "not a phone" in reports[0] and "not a phono" in reports[1]
    assert harness.read("processed/redo/list.csv").encode() == first
    assert harness.read(f"processed/redo/list.job{job_ids[1]}.csv").encode() == second


def test_rejected_files_of_the_same_name_are_all_kept(harness: Harness, factory) -> None:
    factory.project(code="rej")
    for content in (b"name\nIvan\n", b"name\nPetr\n"):
        harness.upload("inbox/rej/x.csv", content)
        [request] = _requests(harness)
        assert not harness.execute(request).success
    ids = [r["id"] for r in harness.rows("SELECT id FROM sftp_jobs ORDER BY id")]
    assert harness.read("rejected/rej/x.csv") == "name\nIvan\n"
    assert harness.read(f"rejected/rej/x.job{ids[1]}.csv") == "name\nPetr\n"
    assert "no phone column" in harness.read(f"rejected/rej/x.job{ids[1]}.csv.error.txt")


# --- item 5: the inbox obeys the rule the API obeys ----------------------------------------


@pytest.mark.parametrize(
    ("status", "linked", "reason"),
    [("inactive", True, "is inactive, not active"), ("active", False, "not linked")],
)
def test_inbox_refuses_a_provider_the_api_would_refuse(
    harness: Harness, factory, status: str, linked: bool, reason: str
) -> None:
    """tests/api/test_sftp_api.py::test_import_provider_checks: the API refuses the same."""
    project = factory.project(code="strict")
    factory.provider(code="vend", status=status, projects=[project] if linked else [])
    path = "inbox/strict/vend/a.csv"
    harness.upload(path, b"phone\n+79161234567\n")
    assert not _requests(harness)
    assert harness.exists("rejected/strict/vend/a.csv")
    assert reason in harness.read("rejected/strict/vend/a.csv.error.txt")
    [job] = harness.rows("SELECT status, error_log FROM sftp_jobs")
    assert job["status"] == "failed" and reason in job["error_log"]
    assert harness.count(project.id) == 0


# --- item 6: completed_at is when it completed -------------------------------------------------


def test_completed_at_is_when_the_import_finished(harness: Harness, factory, database_url):
    """A lock on the project holds the load for 2 s inside its transaction: completed_at must
    come after that wait, not at the transaction's start (which now() would give)."""
    import threading

    import psycopg

    project = factory.project(code="clock")
    harness.upload("inbox/clock/a.csv", csv_bytes([["phone"], *[[p] for p in phones(20)]]))
    [request] = _requests(harness)
    job_id = int(request.tags["numbase/sftp_job_id"])
    held = threading.Event()
    waited: list[bool] = []

    def hold() -> None:
        with psycopg.connect(database_url) as conn, psycopg.connect(database_url) as probe:
            conn.execute("SELECT 1 FROM projects WHERE id = %s FOR UPDATE", (project.id,))
            held.set()
            deadline = time.monotonic() + 60
            while not waited and time.monotonic() < deadline:  # the load is blocked on us
                row = probe.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE application_name = %s"
                    " AND wait_event_type = 'Lock'",
                    (f"numbase-import:{job_id}",),
                ).fetchone()
                probe.rollback()
                if row:
                    waited.append(True)
                time.sleep(0.05)
            time.sleep(2.0)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    result = harness.execute(request)
    holder.join()
    assert result.success and waited
    job = harness.job(job_id)
    assert (job["completed_at"] - job["started_at"]).total_seconds() >= 1.5
    [audit] = harness.rows(
        "SELECT created_at FROM audit_log WHERE action = 'sftp_import.completed'"
    )
    assert (audit["created_at"] - job["started_at"]).total_seconds() >= 1.5
