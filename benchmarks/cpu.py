"""CPU seconds a phase of a benchmark cost each process tree (the API's uvicorn, PostgreSQL).

On a shared machine latency and throughput move with whatever else runs; the CPU a request
costs does not (much). Each phase's line then says what an item cost the API and the database,
a figure to compare across runs and commits even when the machine was busy.

A tree's CPU is its root's own and reaped children's time (utime + stime + cutime + cstime)
plus its live descendants' own time, so a backend that exits mid-phase is still counted (its
time moves into the postmaster's cutime when reaped).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psutil
import psycopg


def tree_cpu(pid: int) -> float:
    try:
        root = psutil.Process(pid)
        t = root.cpu_times()
        total = t.user + t.system + t.children_user + t.children_system
        for child in root.children(recursive=True):
            try:
                c = child.cpu_times()
                total += c.user + c.system
            except psutil.NoSuchProcess:
                pass
        return total
    except psutil.NoSuchProcess:
        return 0.0


def postmaster_pid(db_url: str) -> int | None:
    """The local server's postmaster (the parent of our backend); None for a remote server."""
    with psycopg.connect(db_url) as conn:
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    try:
        return psutil.Process(backend).ppid()
    except psutil.NoSuchProcess:
        return None


@dataclass
class CpuMeter:
    trees: dict[str, int]  # name -> root pid
    spent: dict[str, dict[str, float]] = field(default_factory=dict)  # phase -> name -> s

    def snapshot(self) -> dict[str, float]:
        return {name: tree_cpu(pid) for name, pid in self.trees.items()}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        before = self.snapshot()
        try:
            yield
        finally:
            after = self.snapshot()
            self.spent[name] = {k: after[k] - before[k] for k in self.trees}

    def per_item(self, name: str, items: int) -> str:
        if name not in self.spent or not items:
            return ""
        parts = [f"{k} {v * 1000 / items:.2f}" for k, v in self.spent[name].items()]
        return "CPU ms/item: " + ", ".join(parts)
