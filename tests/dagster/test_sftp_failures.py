"""Bad files, a cut SFTP connection and a killed database backend, against the real parts."""

from __future__ import annotations

import threading
import time
import zipfile

import psycopg
import pytest

from sensors.inbox import sftp_inbox_sensor
from tests.dagster.conftest import Harness, csv_bytes, phones


def _ticks_until_request(h: Harness, n: int = 3):
    for _ in range(n):
        out = h.tick(sftp_inbox_sensor)
        if out.run_requests:
            return out.run_requests
    return []


def _zip_bomb(path) -> None:
    """A 'workbook' whose sheet inflates ~1000:1 to 300 MiB."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        with zf.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as fh:
            block = b"\0" * (1 << 20)
            for _ in range(300):
                fh.write(block)


BAD_FILES = {
    "empty.csv": (lambda p: p.write_bytes(b""), "empty file"),
    "header_only.csv": (lambda p: p.write_bytes(b"phone;name\r\n"), "header only"),
    "no_phone.csv": (
        lambda p: p.write_bytes(b"name,email\nIvan,ivan@example.com\n"),
        "no phone column",
    ),
    "garbage.csv": (
        lambda p: p.write_bytes(bytes(range(256)) * 64 + b"\n"),
        "binary data",
    ),
    "bomb.xlsx": (_zip_bomb, "zip bomb"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_file_fails_with_reason_and_lands_in_rejected(
    harness: Harness, factory, tmp_path, name: str
) -> None:
    project = factory.project(code="bad")
    factory.number(project, "+79160000001")
    make, reason = BAD_FILES[name]
    local = tmp_path / name
    make(local)
    harness.upload(f"inbox/bad/{name}", local.read_bytes())

    [request] = _ticks_until_request(harness)
    result = harness.execute(request)
    assert not result.success
    job = harness.job(int(request.tags["numbase/sftp_job_id"]))
    assert job["status"] == "failed" and reason in job["error_log"]
    assert not harness.exists(f"inbox/bad/{name}")
    assert harness.exists(f"rejected/bad/{name}")
    assert reason in harness.read(f"rejected/bad/{name}.error.txt")
    assert harness.count(project.id) == 1  # unchanged
    # Not retried: a bad file does not get better by waiting.
    assert len(result.filter_events(lambda e: e.event_type_value == "STEP_UP_FOR_RETRY")) == 0


@pytest.mark.parametrize(
    "path, reason",
    [
        ("inbox/ghost/a.csv", "no live project with code 'ghost'"),
        ("inbox/gone/a.csv", "no live project with code 'gone'"),
        ("inbox/known/nobody/a.csv", "no provider with code 'nobody'"),
        ("inbox/loose.csv", "not directly into inbox/"),
    ],
)
def test_file_for_no_live_project_is_rejected_by_the_sensor(
    harness: Harness, factory, path: str, reason: str
) -> None:
    import datetime as dt

    factory.project(code="known")
    factory.project(
        code="gone", status="deleted", is_deleted=True, deleted_at=dt.datetime.now(dt.UTC)
    )
    harness.upload(path, b"phone\n+79161234567\n")
    assert not _ticks_until_request(harness)
    rel = path.removeprefix("inbox/")
    assert harness.exists(f"rejected/{rel}") and not harness.exists(path)
    assert reason in harness.read(f"rejected/{rel}.error.txt")
    [job] = harness.rows("SELECT status, error_log FROM sftp_jobs")
    assert job["status"] == "failed" and reason in job["error_log"]
    assert harness.scalar("SELECT count(*) FROM phone_numbers") == 0


def test_sftp_cut_mid_download_fails_the_attempt_and_the_retry_completes(
    harness: Harness, factory
) -> None:
    project = factory.project(code="cut")
    data = csv_bytes([["phone"], *[[p] for p in phones(60_000)]])  # ~1 MB
    harness.upload("inbox/cut/big.csv", data)
    [request] = _ticks_until_request(harness)

    server = harness.server
    server.read_delay = 0.02  # slow reads so the cut lands mid-transfer
    server.bytes_read = 0

    def cut() -> None:
        deadline = time.monotonic() + 20
        while server.bytes_read == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        server.stop()  # every open connection is aborted mid-download
        time.sleep(0.3)
        server.read_delay = 0.0
        server.start()  # same port, same host key

    cutter = threading.Thread(target=cut)
    cutter.start()
    result = harness.execute(request)
    cutter.join()
    assert server.bytes_read > 0
    retries = result.filter_events(lambda e: e.event_type_value == "STEP_UP_FOR_RETRY")
    assert len(retries) >= 1
    assert result.success
    assert harness.count(project.id) == 60_000
    job = harness.job(int(request.tags["numbase/sftp_job_id"]))
    assert (job["status"], job["records_count"]) == ("completed", 60_000)


def test_database_backend_killed_mid_import_rolls_back_and_file_stays(
    harness: Harness, factory, database_url: str
) -> None:
    """'Database stopped' is simulated by pg_terminate_backend on the import's connection
    while it is loading (the server itself keeps running for the other tests)."""
    project = factory.project(code="dbkill")
    data = csv_bytes([["phone"], *[[p] for p in phones(150_000)]])
    harness.upload("inbox/dbkill/big.csv", data)
    [request] = _ticks_until_request(harness)
    job_id = int(request.tags["numbase/sftp_job_id"])
    killed: list[int] = []

    def kill() -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            deadline = time.monotonic() + 30
            while not killed and time.monotonic() < deadline:
                row = conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = %s"
                    " AND state = 'active' AND (query ILIKE 'COPY%%' OR query ILIKE '%%INSERT%%')",
                    (f"numbase-import:{job_id}",),
                ).fetchone()
                if row:
                    conn.execute("SELECT pg_terminate_backend(%s)", (row[0],))
                    killed.append(row[0])
                time.sleep(0.01)

    killer = threading.Thread(target=kill)
    killer.start()
    result = harness.execute(request)
    killer.join()
    assert killed, "the import finished before the backend could be terminated"
    assert not result.success
    assert harness.count(project.id) == 0
    assert harness.exists("inbox/dbkill/big.csv")
    assert not harness.exists("processed/dbkill/big.csv")
    job = harness.job(job_id)
    # A database failure is transient: the job waits for its automatic retry (test_recovery.py).
    assert job["status"] == "pending" and "rolled back" in job["error_log"]
