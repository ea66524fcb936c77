"""The platform for benchmarks/bench_day.py: `numbase up` itself on a database copy, plus what a
short run needs to say where the time went (CPU per process, what PostgreSQL sessions wait on).

`numbase up` runs as a child (its own session, its own data folder and ports), so the API
workers, `dagster dev` (webserver, daemon, code server, one subprocess per run) and the local
SFTP server are exactly what an operator starts. It is stopped by SIGTERM, its own way out.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from benchmarks.bench_sftp_import import generate

ROOT = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")


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


# --- CPU per process --------------------------------------------------------------------------


def _proc_table() -> dict[int, tuple[int, float, str]]:
    """pid -> (ppid, CPU seconds so far, short command) of every process."""
    out: dict[int, tuple[int, float, str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        cpu = (int(fields[11]) + int(fields[12])) / TICK  # utime + stime
        out[int(entry)] = (int(fields[1]), cpu, cmd.strip())
    return out


def _label(cmd: str) -> str | None:
    """The kind of a platform process; None for a helper (a multiprocessing worker: uvicorn's)."""
    for mark, name in (
        ("uvicorn", "API (uvicorn)"), ("dagster_webserver", "Dagster webserver"),
        ("dagster-webserver", "Dagster webserver"), ("dagster-daemon", "Dagster daemon"),
        ("daemon run", "Dagster daemon"), ("api grpc", "Dagster code server + its runs"),
        ("code-server", "Dagster code server + its runs"), ("execute_run", "Dagster run worker"),
        ("api execute", "Dagster run worker"), ("dbt", "dbt"),
        ("local_sftp", "SFTP server"), ("dagster dev", "dagster dev"),
        ("cli.main up", "numbase up"),
    ):  # fmt: skip
        if mark in cmd:
            return name
    return None


@dataclass
class CpuShare:
    """CPU seconds per kind of process between two snapshots: the platform's process tree,
    this load generator, and the PostgreSQL backends serving `database` (autovacuum included)."""

    root_pid: int
    server_url: str
    database: str
    start: dict[int, tuple[int, float, str]] = field(default_factory=dict)

    def _groups(self, table: dict[int, tuple[int, float, str]]) -> dict[int, str]:
        kids: dict[int, list[int]] = {}
        for pid, (ppid, _, _) in table.items():
            kids.setdefault(ppid, []).append(pid)
        groups: dict[int, str] = {}
        todo = [(self.root_pid, "numbase up")]
        while todo:
            pid, parent = todo.pop()
            label = (_label(table[pid][2]) if pid in table else None) or parent
            groups[pid] = label
            todo += [(kid, label) for kid in kids.get(pid, [])]
        groups[os.getpid()] = "load generator (this process)"
        with psycopg.connect(self.server_url, autocommit=True) as conn:
            for pid, kind in conn.execute(
                # the database's backends and the server-wide ones (checkpointer, WAL writer)
                "SELECT pid, backend_type FROM pg_stat_activity "
                "WHERE datname = %s OR datname IS NULL",
                (self.database,),
            ):
                groups[pid] = f"PostgreSQL {kind}"
        return groups

    def workers(self, label: str) -> list[int]:
        """Pids of `label` processes started by one of the same kind (uvicorn's workers)."""
        table = _proc_table()
        groups = self._groups(table)
        return [
            pid for pid, kind in groups.items()
            if kind == label and pid in table and groups.get(table[pid][0]) == label
        ]  # fmt: skip

    def begin(self) -> None:
        self.start = _proc_table()

    def end(self) -> Counter[str]:
        now = _proc_table()
        use: Counter[str] = Counter()
        for pid, label in self._groups(now).items():
            if pid in now:
                before = self.start.get(pid, (0, 0.0, ""))[1]
                use[label] += now[pid][1] - before
        return use


# --- what the database's sessions wait on ------------------------------------------------------


class WaitSampler:
    """Samples pg_stat_activity of `database` every `every` s: (state, wait event) counts of
    client backends, autovacuum workers seen, and lock waits (pg_locks not granted)."""

    def __init__(self, db_url: str, database: str, every: float = 0.5) -> None:
        self.db_url, self.database, self.every = db_url, database, every
        self.waits: Counter[str] = Counter()
        self.autovacuum: Counter[str] = Counter()
        self.lock_waits = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            while not self._stop.wait(self.every):
                self.samples += 1
                for kind, state, wait, query in conn.execute(
                    "SELECT backend_type, state, coalesce(wait_event_type || ':' || wait_event, "
                    "'CPU'), left(query, 60) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    (self.database,),
                ):
                    if kind == "autovacuum worker":
                        self.autovacuum[query] += 1
                    elif kind == "client backend" and state == "active":
                        self.waits[wait] += 1
                row = conn.execute("SELECT count(*) FROM pg_locks WHERE NOT granted").fetchone()
                self.lock_waits += row[0] if row else 0

    def __enter__(self) -> WaitSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def report(self) -> list[str]:
        n = max(1, self.samples)
        active = ", ".join(f"{k} {v / n:.2f}" for k, v in self.waits.most_common(8))
        lines = [f"active client backends (mean per sample, by wait): {active or 'none'}"]
        lines.append(f"ungranted locks: {self.lock_waits / n:.2f} per sample ({self.samples})")
        for query, v in self.autovacuum.most_common(5):
            lines.append(f"autovacuum seen in {v / n:.0%} of samples: {query}")
        return lines


# --- where an API worker's CPU goes (optional: py-spy) -----------------------------------------


def py_spy() -> Path:
    spy = Path(sys.executable).with_name("py-spy")
    if not spy.exists():  # not a project dependency: a profiling tool, installed on demand
        raise RuntimeError(f"--profile needs py-spy: {spy.parent}/pip install py-spy")
    return spy


def profile(pids: list[int], seconds: float, out: Path) -> list[subprocess.Popen[bytes]]:
    """Start `py-spy record` (50 Hz, without pausing the target) on each pid for `seconds`."""
    spy = py_spy()
    out.mkdir(parents=True, exist_ok=True)
    return [
        subprocess.Popen(
            [
                str(spy),
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(int(seconds)),
                "--rate",
                "50",
                "--nonblocking",
                "--format",
                "raw",
                "-o",
                str(out / f"pyspy-{pid}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for pid in pids
    ]


def profile_summary(out: Path, top: int = 12) -> list[str]:
    """Share of samples per leaf function and per numbase function on the stack (inclusive)."""
    leaf: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    total = 0
    for path in out.glob("pyspy-*.txt"):
        for line in path.read_text().splitlines():
            stack, _, n = line.rpartition(" ")
            if not stack or not n.isdigit():
                continue
            # "func (path:line)" -> "func (path)", repository paths relative to it
            frames = [
                re.sub(r":\d+\)$", ")", f).replace(f"({ROOT}/", "(") for f in stack.split(";")
            ]
            total += int(n)
            leaf[frames[-1]] += int(n)
            for f in set(frames):
                if any(f"({d}/" in f for d in ("api", "models")):
                    ours[f] += int(n)
    if not total:
        return ["no py-spy samples"]
    lines = [f"{total} samples; leaf functions:"]
    lines += [f"  {v / total:5.1%} {k}" for k, v in leaf.most_common(top)]
    lines.append("numbase functions on the stack (inclusive):")
    lines += [f"  {v / total:5.1%} {k}" for k, v in ours.most_common(top)]
    return lines
