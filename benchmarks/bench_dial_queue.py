"""Dial queue load: 50 holders leasing one number at a time from the 2M-number project of the 10M
base while SoftPhone webhook events arrive at 500/s; then the queue-state call.

    .venv/bin/python -m benchmarks.bench_dial_queue [--url SERVER_URL] [--workers 2] [--quick]

Set-up as benchmarks/bench_softphone.py: the API as `numbase up` runs it, on a file-level copy of
the base (dropped afterwards), migrated to head (the dial-queue columns are catalog-only; the
partial index ix_phone_numbers_dial_queue is built, timed), this process the load generator on
loopback with the same minimal HTTP client. Every hour is made legal and unknown zones count as
Moscow (NUMBASE_DIALING_*), so the time predicate is evaluated but does not empty the queue at
night or on numbers the base left without a zone.

Phases (bounded in count and time):

  lease alone      --holders closed-loop holders, `count: 1` each (lease throughput, p50/p99)
  lease + webhook  the same while an open loop sends --rate events/s (1 per request): call_ended
                   and call_result (no_answer / busy / voicemail) of the numbers just leased,
                   so leases end and retries are scheduled, else results on random numbers
  queue state      GET /api/projects/1/dial-queue/ closed loop, c=4 (p95)

Afterwards: no number was handed to two holders (each lease is live for --lease-seconds, longer
than the run, and a webhook result schedules the retry an hour on, so any repeat is a double
lease), checked on the answers and on the audit log; and every answer was a 200.
Aims (issue 15): >= 500 leases/s with p99 < 50 ms; queue state p95 < 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import sys
import time
from collections import deque
from pathlib import Path

import psycopg
import uvloop

from benchmarks.base import (
    BENCH_DATABASE,
    SPEC,
    bench_server,
    clone_database,
    database_url,
    drop_database,
    ensure_base,
)
from benchmarks.bench_softphone import (
    API_KEY,
    JWT_SECRET,
    SECRET,
    Conn,
    Stats,
    base_phone,
    closed_loop,
    get_bytes,
    open_loop,
    post_bytes,
    webhook_check,
)
from benchmarks.cpu import CpuMeter, postmaster_pid
from benchmarks.serve import start_api, stop_api
from models import migrate

ROOT = Path(__file__).resolve().parent.parent
RUN_DATABASE = "numbase_bench_dial_queue"
PROJECT = 1  # the 2M-number project of the base (benchmarks/base.py)


def lease_bytes(holder: str, lease_seconds: int) -> bytes:
    body = json.dumps({"count": 1, "holder": holder, "lease_seconds": lease_seconds}).encode()
    head = (
        f"POST /api/projects/{PROJECT}/dial-queue/lease/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"X-API-Key: {API_KEY}\r\n\r\n"
    )
    return head.encode() + body


class Leases:
    """Every number handed out, by whom; the phones waiting for their webhook events."""

    def __init__(self) -> None:
        self.holder_of: dict[int, str] = {}
        self.doubles: list[tuple[int, str, str]] = []
        self.to_report: deque[str] = deque()
        self.empty = 0

    def record(self, holder: str, body: bytes) -> str | None:
        numbers = json.loads(body)["numbers"]
        if not numbers:
            self.empty += 1
        for n in numbers:
            if n["id"] in self.holder_of:
                self.doubles.append((n["id"], self.holder_of[n["id"]], holder))
            self.holder_of[n["id"]] = holder
            self.to_report.append(n["phone_number"])
        return None


async def holders_loop(
    stats: Stats, port: int, leases: Leases, holders: int, lease_seconds: int,
    *, max_seconds: float, pause: float = 0.0,
) -> None:  # fmt: skip
    """Each holder leases one number, waits `pause` s (its call; 0: at once), leases again."""
    deadline = time.perf_counter() + max_seconds

    async def holder(i: int) -> None:
        conn, name = Conn("127.0.0.1", port), f"agent-{i}"
        raw = lease_bytes(name, lease_seconds)
        try:
            while time.perf_counter() < deadline:
                t = time.perf_counter()
                status, body = await conn.request(raw)
                stats.latencies.append(time.perf_counter() - t)
                if status != 200:
                    stats.errors.append(f"HTTP {status}: {body[:200]!r}")
                    continue
                stats.items += 1
                leases.record(name, body)
                if pause:
                    await asyncio.sleep(pause)
        finally:
            conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(holder(i) for i in range(holders)))
    stats.elapsed = time.perf_counter() - started


def event_maker(rng: random.Random, leases: Leases):  # type: ignore[no-untyped-def]
    seq = iter(range(1, 10**12))
    pending: deque[dict[str, object]] = deque()

    def make() -> tuple[bytes, int]:
        if not pending:
            now = dt.datetime.now(dt.UTC)
            k = next(seq)
            if leases.to_report:  # the call of a number just leased: ended, then its result
                phone, kinds = leases.to_report.popleft(), ("call_ended", "call_result")
            else:
                phone, kinds = base_phone(rng.randrange(1, SPEC["rows"] + 1)), ("call_result",)
            for i, kind in enumerate(kinds):
                e: dict[str, object] = {
                    "event_id": f"dq-{os.getpid()}-{k}-{i}", "event_type": kind,
                    "phone_number": phone, "call_id": f"dq-{k}",
                    "occurred_at": (now - dt.timedelta(seconds=2 - i)).isoformat(),
                }  # fmt: skip
                if kind == "call_result":
                    e["status"] = "no_answer"
                    e["result_data"] = {"outcome": rng.choice(["no_answer", "busy", "voicemail"])}
                pending.append(e)
        body = json.dumps(pending.popleft(), separators=(",", ":")).encode()
        return post_bytes(body), 1

    return make


def state_check(status: int, body: bytes) -> str | None:
    return None if status == 200 else f"HTTP {status}: {body[:200]!r}"


async def run_phases(
    args: argparse.Namespace, port: int, meter: CpuMeter
) -> tuple[list[Stats], Leases]:
    scale = 0.25 if args.quick else 1.0
    rng, leases, out = random.Random(15), Leases(), []

    s = Stats(f"lease alone, {args.holders} holders", "leases")
    with meter.phase(s.name):
        await holders_loop(s, port, leases, args.holders, args.lease_seconds,
                           max_seconds=20 * scale)  # fmt: skip
    out.append(s)

    lease = Stats(f"lease + webhook @{args.rate:.0f}/s", "leases")
    hooks = Stats(f"webhook @{args.rate:.0f}/s during leases", "events")
    with meter.phase(lease.name):  # one figure per lease for both paths: they share processes
        await asyncio.gather(
            holders_loop(lease, port, leases, args.holders, args.lease_seconds,
                         max_seconds=40 * scale),
            open_loop(hooks, "127.0.0.1", port, args.rate, event_maker(rng, leases),
                      webhook_check(hooks), max_items=int(args.rate * 40 * scale),
                      max_seconds=40 * scale),
        )  # fmt: skip
    out.extend([lease, hooks])

    path = f"/api/projects/{PROJECT}/dial-queue/"
    s = Stats("queue state, c=4", "calls")
    with meter.phase(s.name):
        await closed_loop(s, "127.0.0.1", port, 4,
                          lambda: (get_bytes(path, {"X-API-Key": API_KEY}), 1), state_check,
                          max_items=2000, max_seconds=20 * scale)  # fmt: skip
    out.append(s)
    return out, leases


def p95(stats: Stats) -> float:
    lat = sorted(stats.latencies)
    return lat[min(len(lat) - 1, int(0.95 * len(lat)))] * 1000 if lat else float("nan")


def audit_doubles(db_url: str) -> int:
    """Numbers leased more than once in this run, by the audit log (one row per lease)."""
    with psycopg.connect(db_url) as conn:
        return conn.execute(  # type: ignore[index]
            "SELECT count(*) FROM (SELECT entity_id FROM audit_log "
            "WHERE action = 'dial_queue_lease' GROUP BY entity_id HAVING count(*) > 1) d"
        ).fetchone()[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="PostgreSQL server URL (default: embedded bench server)")
    parser.add_argument("--workers", type=int, default=max(1, os.cpu_count() or 1))
    parser.add_argument("--holders", type=int, default=50)
    parser.add_argument("--rate", type=float, default=500.0, help="webhook events/s")
    parser.add_argument("--lease-seconds", type=int, default=3600)
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--quick", action="store_true", help="phases 4x shorter")
    parser.add_argument("--keep", action="store_true", help="keep the database copy")
    args = parser.parse_args(argv)

    with bench_server(args.url) as server_url:
        ensure_base(database_url(server_url, BENCH_DATABASE))
        t = time.perf_counter()
        db_url, _ = clone_database(server_url, BENCH_DATABASE, RUN_DATABASE)
        print(f"copied the base to {RUN_DATABASE} in {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        migrate.upgrade(db_url)
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("ANALYZE phone_numbers")
        print(
            f"migrated to head (dial-queue index) and analysed in {time.perf_counter() - t:.1f} s"
        )
        proc = None
        try:
            proc = start_api(
                db_url, args.port, ROOT / ".numbase" / "bench-api.log", workers=args.workers,
                env={
                    "NUMBASE_JWT_SECRET": JWT_SECRET,
                    "NUMBASE_SOFTPHONE_WEBHOOK_SECRET": SECRET,
                    "NUMBASE_SOFTPHONE_API_KEY": API_KEY,
                    "NUMBASE_DIALING_WORKDAY_HOURS": "00:00-24:00",
                    "NUMBASE_DIALING_DAYOFF_HOURS": "00:00-24:00",
                    "NUMBASE_DIALING_UNKNOWN_ZONE": "Europe/Moscow",
                },
            )  # fmt: skip
            print(f"API up: uvicorn --workers {args.workers} on 127.0.0.1:{args.port}")
            pg = postmaster_pid(db_url)
            meter = CpuMeter({"api": proc.pid, **({"pg": pg} if pg else {})})
            stats, leases = uvloop.run(run_phases(args, args.port, meter))
        finally:
            if proc is not None:
                stop_api(proc)
        for st in stats:
            print(st.line())
            if st.name in meter.spent:
                print(f"{'':<26} {meter.per_item(st.name, st.items)}")
            for err in st.errors[:5]:
                print(f"{'':<26} ERROR {err}")
        print(f"queue state p95 {p95(stats[-1]):.1f} ms; numbers leased {len(leases.holder_of):,}; "
              f"empty answers {leases.empty}")  # fmt: skip
        doubles = len(leases.doubles) + audit_doubles(db_url)
        errors = sum(len(s.errors) for s in stats)
        if not args.keep:
            drop_database(server_url, RUN_DATABASE)
    ok = not doubles and not errors
    print("OK: zero errors, zero double leases" if ok else
          f"FAILED: {errors} errors, {doubles} double leases {leases.doubles[:5]}")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
