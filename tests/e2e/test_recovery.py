"""Crashes of the real processes under `numbase up` (issue 12, item 7): a killed SFTP server is
restarted; an import whose run worker, or whose whole code server, is killed in the middle of
its load transaction ends with job and run consistent and is retried once, automatically,
loading every row exactly once.

The load is caught mid-transaction deterministically: the test holds `LOCK TABLE phone_numbers
IN SHARE MODE`, so the loader waits inside its transaction (job row locked, rows staged) until
the test has killed what it wants and let go.
"""

from __future__ import annotations

import contextlib
import io
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg
import pytest

from tests.e2e.budget import Budget, fits
from tests.e2e.test_platform import (
    ADMIN_PASSWORD,
    Platform,
    _created,
    _login,
    _processes_of,
    e2e_database,  # noqa: F401 - the fixture
)

# Seconds per step (tests/e2e/budget.py); the whole test takes 3-4 min at a load average of ~8.
LIMITS = {
    "numbase up ready": 240.0,
    "create-user": 60.0,
    "SFTP server restarted": 60.0,
    "SFTP server answers": 60.0,
    # each: the upload's two sensor ticks and a run reaching its load; the worker's pid
    "import a.csv inside its load": 150.0,
    "run worker's pid": 30.0,
    # each: the kill noticed (<= 30 s), retry backoff, a new run starting, the load
    "job of a.csv completed on its retry": 200.0,
    "runs of a.csv ended": 60.0,
    "import b.csv inside its load": 150.0,
    "job of b.csv completed on its retry": 200.0,
    "runs of b.csv ended": 60.0,
    "Ctrl-C stop": 90.0,
    "no process left": 30.0,
}
TEARDOWN_RESERVE = 120.0
TIMEOUT = fits(1520.0, LIMITS, TEARDOWN_RESERVE)


@pytest.fixture
def platform(tmp_path: Path, e2e_database: str) -> Iterator[Platform]:  # noqa: F811
    p = Platform(tmp_path, e2e_database)
    p.env.update(NUMBASE_IMPORT_RETRY_ATTEMPTS="3", NUMBASE_IMPORT_RETRY_DELAY_SECONDS="1")
    p.budget = Budget(TIMEOUT, LIMITS, TEARDOWN_RESERVE)
    p.budget.context = p.log_tail
    p.start()
    try:
        yield p
    finally:
        p.stop(timeout=TEARDOWN_RESERVE / 2)
        for proc in psutil.process_iter(["environ"]):
            try:
                if (proc.info["environ"] or {}).get("NUMBASE_DATA_DIR") == str(p.data_dir):
                    proc.kill()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass


def _ours(p: Platform, marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "environ"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
            env = proc.info["environ"] or {}
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if marker in cmd and env.get("NUMBASE_DATA_DIR") == str(p.data_dir):
            found.append(proc)
    return found


def _kill_tree(proc: psutil.Process) -> None:
    victims = [proc, *proc.children(recursive=True)]
    for v in victims:
        with contextlib.suppress(psutil.NoSuchProcess):
            v.send_signal(signal.SIGKILL)


def _upload(p: Platform, path: str, rows: list[str]) -> None:
    client, sftp = p.sftp()
    try:
        folder = path.rsplit("/", 1)[0]
        with contextlib.suppress(OSError):  # already there
            sftp.mkdir(folder)
        data = ("phone\n" + "\n".join(rows) + "\n").encode()
        sftp.putfo(io.BytesIO(data), path)
    finally:
        client.close()


class Db:
    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)

    def one(self, sql: str, *args: Any) -> Any:
        return self.conn.execute(sql, args).fetchone()

    def all(self, sql: str, *args: Any) -> list[Any]:
        return self.conn.execute(sql, args).fetchall()

    def blocked_import(self, path: str) -> tuple[int, str] | None:
        """(job id, run id) once the import of `path` waits on the table lock mid-load."""
        row = self.one(
            "SELECT j.id, j.dagster_run_id FROM sftp_jobs j JOIN pg_stat_activity a"
            " ON a.application_name = 'numbase-import:' || j.id"
            " WHERE j.file_path = %s AND j.status = 'running' AND a.wait_event_type = 'Lock'",
            path,
        )
        return (int(row[0]), str(row[1])) if row else None

    def run_worker_pid(self, run_id: str) -> int | None:
        row = self.one(
            "SELECT event FROM dagster.event_logs WHERE run_id = %s"
            " AND event LIKE '%%Started process for run (pid: %%' LIMIT 1",
            run_id,
        )
        match = re.search(r"pid: (\d+)", row[0]) if row else None
        return int(match.group(1)) if match else None

    def runs_of(self, job_id: int) -> list[tuple[str, str]]:
        """(run id, status) of the job's runs, oldest first."""
        return [
            (r[0], r[1])
            for r in self.all(
                "SELECT r.run_id, r.status FROM dagster.runs r JOIN dagster.run_tags t"
                " ON t.run_id = r.run_id AND t.key = 'numbase/sftp_job_id' AND t.value = %s"
                " ORDER BY r.id",
                str(job_id),
            )
        ]

    def job(self, job_id: int) -> dict[str, Any]:
        cur = self.conn.execute("SELECT * FROM sftp_jobs WHERE id = %s", (job_id,))
        names = [d.name for d in cur.description or []]
        row = cur.fetchone()
        assert row is not None
        return dict(zip(names, row, strict=True))


def _crash_mid_load(p: Platform, db: Db, url: str, path: str, rows: list[str], kill) -> int:  # type: ignore[no-untyped-def]
    """Upload, catch the load inside its transaction, kill(run_id), let go; the job id."""
    with psycopg.connect(url) as holder:
        holder.execute("LOCK TABLE phone_numbers IN SHARE MODE")
        _upload(p, path, rows)
        name = path.rsplit("/", 1)[-1]
        job_id, run_id = p.wait(f"import {name} inside its load", lambda: db.blocked_import(path))
        kill(run_id)
        holder.rollback()
    return job_id


def _completed_once(  # type: ignore[type-arg]
    p: Platform, db: Db, name: str, job_id: int, project_id: int, n: int, total: int
) -> list:
    def done() -> dict[str, Any] | None:
        job = db.job(job_id)
        assert job["status"] != "failed", job
        return job if job["status"] == "completed" else None

    job = p.wait(f"job of {name} completed on its retry", done, every=2)
    assert (job["records_count"], job["attempt"]) == (n, 2), job
    assert (
        db.one("SELECT count(*) FROM phone_numbers WHERE project_id = %s", project_id)[0] == total
    )
    actions = db.all(
        "SELECT action, changes->>'error' FROM audit_log WHERE entity_type = 'sftp_job'"
        " AND entity_id = %s ORDER BY id",
        job_id,
    )
    assert [a for a, _ in actions] == ["sftp_import.retry_scheduled", "sftp_import.completed"]
    print(f"\njob {job_id}: first attempt ended with: {actions[0][1]}")

    def runs_ended() -> list[tuple[str, str]] | None:  # the retry run finishes after its commit
        runs = db.runs_of(job_id)
        return runs if runs and runs[-1][1] in ("SUCCESS", "FAILURE", "CANCELED") else None

    return p.wait(f"runs of {name} ended", runs_ended)


@pytest.mark.slow
@pytest.mark.timeout(TIMEOUT)
def test_killed_children_recover_and_imports_complete_exactly_once(platform: Platform) -> None:
    p = platform
    p.wait("numbase up ready", p.running)
    with p.budget.step("create-user") as limit:
        made = p.cli(
            "create-user", "--username", "admin", "--email", "admin@example.com",
            "--role", "admin", "--password-stdin", stdin=ADMIN_PASSWORD + "\n", timeout=limit,
        )  # fmt: skip
    assert made.returncode == 0, made.stderr
    http = httpx.Client(base_url=p.api, timeout=30)
    admin = _login(http, "admin", ADMIN_PASSWORD)
    project = _created(
        http.post("/api/projects/", headers=admin, json={"code": "rec", "name": "Recovery"})
    )
    url = p.env["NUMBASE_DATABASE_URL"]
    db = Db(url)

    # --- a dead child of numbase up is restarted -------------------------------------------
    [sftp_server] = _ours(p, "orchestration.local_sftp")
    sftp_server.send_signal(signal.SIGKILL)
    p.wait(
        "SFTP server restarted",
        lambda: "SFTP server exited (-9); restarting it (1 of 3)" in p.log.read_text(),
    )

    def sftp_back() -> bool:
        client, _ = p.sftp()
        client.close()
        return True

    p.wait("SFTP server answers", sftp_back)

    # --- the run worker killed inside the load transaction ---------------------------------
    rows_a = [f"+7916{i:07d}" for i in range(3000)]

    def kill_run_worker(run_id: str) -> None:
        pid = p.wait("run worker's pid", lambda: db.run_worker_pid(run_id))
        psutil.Process(pid).send_signal(signal.SIGKILL)

    job_a = _crash_mid_load(p, db, url, "inbox/rec/a.csv", rows_a, kill_run_worker)
    runs = _completed_once(p, db, "a.csv", job_a, project["id"], len(rows_a), len(rows_a))
    assert [status for _, status in runs] == ["FAILURE", "SUCCESS"], runs

    # --- the code server killed (with its run worker) inside the load transaction ----------
    rows_b = [f"+7926{i:07d}" for i in range(3000)]

    def kill_code_server(_run_id: str) -> None:
        [server] = _ours(p, "dagster api grpc")
        _kill_tree(server)

    job_b = _crash_mid_load(p, db, url, "inbox/rec/b.csv", rows_b, kill_code_server)
    total = len(rows_a) + len(rows_b)
    runs = _completed_once(p, db, "b.csv", job_b, project["id"], len(rows_b), total)
    # The dead run is not left STARTED for ever: the recovery sensor failed it.
    assert [status for _, status in runs] == ["FAILURE", "SUCCESS"], runs
    log = p.log.read_text(errors="replace")
    assert "is unreachable (its code server died); restarting it (1 of 3)" in log
    [why] = db.one(
        "SELECT changes->>'error' FROM audit_log WHERE entity_id = %s"
        " AND action = 'sftp_import.retry_scheduled'",
        job_b,
    )
    assert "no process works on it" in why

    for line in log.splitlines():  # what the recovery sensors did, for the record
        if re.search(r" - sftp_job_\w+_sensor - ", line):
            print(line[:300])
    with p.budget.step("Ctrl-C stop") as limit:
        code = p.stop(timeout=limit)
    assert code == 0, p.log.read_text(errors="replace")[-4000:]
    p.budget.poll("no process left", lambda: not _processes_of(p.data_dir, p.ports), every=0.3)
