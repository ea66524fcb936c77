"""Where a bench_day run's time went: CPU per process (from /proc), what the database's sessions
wait on (pg_stat_activity, pg_locks), and optionally py-spy of the API workers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")


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
