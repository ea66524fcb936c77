"""The platform for benchmarks/bench_day.py: `numbase up` itself on a database copy, and a file
dropped into its SFTP inbox (where the time went: benchmarks/day_probes.py).

`numbase up` runs as a child (its own session, its own data folder and ports), so the API
workers, `dagster dev` (webserver, daemon, code server, one subprocess per run) and the local
SFTP server are exactly what an operator starts. It is stopped by SIGTERM, its own way out.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from benchmarks.bench_sftp_import import generate

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Platform:
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 240.0) -> None:
        full = dict(os.environ)
        full.update(self.env)
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cli.main", "up"], cwd=ROOT, env=full,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if b"numbase: running" in self.log.read_bytes():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"`numbase up` did not come up; see {self.log}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)  # numbase up stops its children itself
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


# --- the import ---------------------------------------------------------------------------------


class Importer:
    """Drops a generated file into the inbox over SFTP and waits for its import to commit."""

    def __init__(
        self, db_url: str, work: Path, sftp_port: int, password: str, rows: int, timeout: float
    ) -> None:
        from orchestration.resources import SFTPResource

        self.db_url, self.work, self.rows, self.timeout = db_url, work, rows, timeout
        self.sftp = SFTPResource(port=sftp_port, password=password,
                                 known_hosts=str(work / "known_hosts"))  # fmt: skip
        self.results: dict[str, dict[str, float]] = {}

    def prepare(self, name: str, first: int) -> None:
        """Write the file beforehand: generating it would cost the load generator CPU."""
        generate(self.work / f"day-{name}.csv", self.rows, prefix="+7812", digits=7, first=first)

    def run(self, name: str, project: int) -> dict[str, float]:
        csv = self.work / f"day-{name}.csv"
        remote = f"inbox/bench{project}/{csv.name}"
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            dropped = conn.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
            with self.sftp.session() as s:
                s.upload(csv, remote)
                s.write_bytes(remote + ".done", b"")
            deadline = time.monotonic() + self.timeout
            while time.monotonic() < deadline:
                row = conn.execute(
                    "SELECT status, extract(epoch FROM created_at - %s), "
                    "extract(epoch FROM started_at - created_at), "
                    "extract(epoch FROM completed_at - started_at), "
                    "extract(epoch FROM completed_at - %s), records_count, error_log "
                    "FROM sftp_jobs WHERE job_type = 'import' AND file_name = %s "
                    "ORDER BY id DESC LIMIT 1",
                    (dropped, dropped, csv.name),
                ).fetchone()
                if row and row[0] in ("completed", "failed"):
                    break
                time.sleep(0.25)
            else:
                raise RuntimeError(f"{remote}: not imported within {self.timeout} s")
        if row[0] != "completed":
            raise RuntimeError(f"{remote}: import {row[0]}: {row[6]}")
        out = {"sensor": float(row[1]), "start": float(row[2]), "run": float(row[3]),
               "total": float(row[4]), "rows": float(row[5])}  # fmt: skip
        self.results[name] = out
        return out


def wait_quiet(db_url: str, timeout: float, at_least: float = 45.0) -> float:
    """Wait until Dagster has no run queued or in flight, and at least `at_least` s: the
    post-import conversion refresh is requested by a sensor ticking every 30 s."""
    started = time.monotonic()
    with psycopg.connect(db_url, autocommit=True) as conn:
        while time.monotonic() - started < timeout:
            row = conn.execute(
                "SELECT count(*) FROM dagster.runs WHERE status NOT IN "
                "('SUCCESS', 'FAILURE', 'CANCELED')"
            ).fetchone()
            if row and row[0] == 0 and time.monotonic() - started >= at_least:
                break
            time.sleep(1)
    return time.monotonic() - started
