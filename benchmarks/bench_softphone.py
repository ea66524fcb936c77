"""SoftPhone load: signed webhook events/s and pop-up lookups/s against the 10M-number base.

    .venv/bin/python -m benchmarks.bench_softphone [--url SERVER_URL] [--workers 2] [--quick]

The API runs as `numbase up` runs it (`uvicorn api.main:create_app --factory --workers N`, default
settings, INFO logging) on a file-level copy of the base (`CREATE DATABASE ... TEMPLATE
numbase_bench STRATEGY FILE_COPY`, dropped afterwards: the base itself is never modified). This
process is the load generator on loopback: asyncio with a minimal HTTP/1.1 keep-alive client
(httpx would spend more CPU than the server on this 2-core machine), signing every request at
send time with the scheme in api/webhook_auth.py.

Workload: calls on random numbers of the base (start, end, result with result_data; each call's
three events shuffled within a window of 30, so results often arrive before their starts), 2% of
events re-sent later (duplicates), 1% on unknown numbers. Phases (bounded in count and time):

  webhook @rate   open loop at --rate events/s, one event per request, then --rate-batch (10)
                  per request; latency from the *scheduled* send time, so a stalled server
                  cannot hide its queue (a backlog over 3 s ends the phase as not sustained)
  webhook max     closed loop, one event per request, --conns connections
  webhook batch   closed loop, --batch events per request
  (pause)         --settle seconds, so the batch phase's background work (autovacuum of the
                  fresh call_events and audit_log rows, WAL) does not land in the next phase
  pop-up @rate    open loop at --popup-rate lookups/s, service key (X-API-Key)
  pop-up max      closed loop, service key; then with a manager's token (RBAC query included)
  mixed           softphones as they really run: webhook at --rate / 2 events/s (one per
                  request) and pop-ups at --popup-rate / 2 lookups/s at the same time

Afterwards: zero errors, and zero lost events (call_events rows == distinct events sent, and the
numbers' call_attempts grew by exactly the distinct matched call_ended events).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import uvloop

from api.webhook_auth import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from benchmarks.base import (
    BENCH_DATABASE,
    SPEC,
    bench_server,
    clone_database,
    database_url,
    drop_database,
    ensure_base,
)
from benchmarks.cpu import CpuMeter, postmaster_pid
from benchmarks.serve import start_api, stop_api

ROOT = Path(__file__).resolve().parent.parent
RUN_DATABASE = "numbase_bench_softphone"
SECRET = "bench-webhook-secret-0123456789"
API_KEY = "bench-softphone-service-key-0123"
JWT_SECRET = "bench-jwt-secret-" + "x" * 40
MANAGER_PROJECTS = range(1, 21)  # the manager's projects: 1 (2M numbers) and 19 others


def base_phone(g: int) -> str:
    """Phone of row g of the base (benchmarks/base.py PHONE_SQL)."""
    return "+79" + str((g * 387420489) % 1_000_000_000).zfill(9)


# --- a minimal HTTP/1.1 client ---------------------------------------------------------------


class Conn:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            self.writer.get_extra_info("socket").setsockopt(
                socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
            )
        assert self.reader is not None
        self.writer.write(raw)
        try:  # the whole head at once: one await instead of one per header line
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            raise ConnectionError("server closed the connection") from exc
        status = int(head[9:12])  # "HTTP/1.1 200 OK"
        at = head.lower().find(b"\r\ncontent-length:")
        length = int(head[at + 17 : head.index(b"\r\n", at + 2)]) if at >= 0 else 0
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def post_bytes(body: bytes) -> bytes:
    ts = int(time.time())
    head = (
        f"POST /api/softphone/webhook/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"{TIMESTAMP_HEADER}: {ts}\r\n{SIGNATURE_HEADER}: {sign(SECRET, ts, body)}\r\n\r\n"
    )
    return head.encode() + body


def get_bytes(path: str, headers: dict[str, str]) -> bytes:
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode()


# --- workload ---------------------------------------------------------------------------------


@dataclass
class Workload:
    rng: random.Random
    buffer: list[dict[str, object]] = field(default_factory=list)
    sent_ids: set[str] = field(default_factory=set)
    ended_sent: dict[str, int] = field(default_factory=dict)  # base phone -> distinct call_ended
    calls: int = 0

    def more(self, n: int) -> list[dict[str, object]]:
        """The next n events: a sliding window of n + 30 shuffled, so a call's three events
        often arrive out of order; 2% are queued again to be re-sent later (duplicates)."""
        while len(self.buffer) < n + 30:
            self._call()
        window = self.buffer[: n + 30]
        self.rng.shuffle(window)
        out, self.buffer = window[:n], window[n:] + self.buffer[n + 30 :]
        for e in out:
            if self.rng.random() < 0.02:
                self.buffer.insert(self.rng.randrange(len(self.buffer)), e)
        return out

    def _call(self) -> None:
        self.calls += 1
        if self.rng.random() >= 0.01:
            phone = base_phone(self.rng.randrange(1, SPEC["rows"] + 1))
        else:  # not in the base ("+79..." there): stored unmatched
            phone = "+7495" + str(self.rng.randrange(10**7)).zfill(7)
        start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=self.rng.randrange(3600, 86400))
        end = start + dt.timedelta(seconds=self.rng.randrange(5, 600))
        call_id = f"call-{os.getpid()}-{self.calls}"
        events: list[dict[str, object]] = [
            {"event_type": "call_started", "occurred_at": start.isoformat()},
            {"event_type": "call_ended", "occurred_at": end.isoformat()},
            {
                "event_type": "call_result",
                "occurred_at": (end + dt.timedelta(seconds=1)).isoformat(),
                "status": self.rng.choice(["success", "failed", "no_answer"]),
                "result_data": {"agent": f"a{self.rng.randrange(50)}", "talk_s": 42},
            },
        ]
        for i, e in enumerate(events):
            e.update(event_id=f"{call_id}-{i}", phone_number=phone, call_id=call_id)
        self.buffer.extend(events)

    def body(self, events: list[dict[str, object]], batch: bool) -> bytes:
        for e in events:
            event_id, phone = str(e["event_id"]), str(e["phone_number"])
            if event_id not in self.sent_ids:
                self.sent_ids.add(event_id)
                if e["event_type"] == "call_ended" and phone.startswith("+79"):
                    self.ended_sent[phone] = self.ended_sent.get(phone, 0) + 1
        payload = events if batch else events[0]
        return json.dumps(payload, separators=(",", ":")).encode()


# --- load loops -------------------------------------------------------------------------------


@dataclass
class Stats:
    name: str
    unit: str
    latencies: list[float] = field(default_factory=list)
    items: int = 0
    errors: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    results: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        lat = sorted(self.latencies)
        if not lat:
            return f"{self.name}: no requests"
        p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000  # noqa: E731
        return (
            f"{self.name:<26} {self.items / self.elapsed:8.0f} {self.unit}/s  "
            f"({len(lat)} requests, {self.items} {self.unit} in {self.elapsed:.1f} s)  "
            f"p50 {p(0.50):6.1f} ms  p99 {p(0.99):6.1f} ms  max {lat[-1] * 1000:6.1f} ms  "
            f"errors {len(self.errors)}"
        )


Make = Callable[[], tuple[bytes, int]]  # -> (raw request, items in it)
Check = Callable[[int, bytes], str | None]  # -> error text or None


async def closed_loop(
    stats: Stats, host: str, port: int, conns: int, make: Make, check: Check,
    *, max_items: int, max_seconds: float,
) -> None:  # fmt: skip
    deadline = time.perf_counter() + max_seconds

    async def worker() -> None:
        conn = Conn(host, port)
        try:
            while stats.items < max_items and time.perf_counter() < deadline:
                raw, n = make()
                stats.items += n
                t = time.perf_counter()
                status, body = await conn.request(raw)
                stats.latencies.append(time.perf_counter() - t)
                if err := check(status, body):
                    stats.errors.append(err)
        finally:
            conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conns)))
    stats.elapsed = time.perf_counter() - started


async def open_loop(
    stats: Stats, host: str, port: int, rate: float, make: Make, check: Check,
    *, max_items: int, max_seconds: float, conns: int = 64,
    on_reply: Callable[[bytes, int], None] | None = None,
) -> None:  # fmt: skip
    """Requests scheduled at `rate`/s; latency counts from the scheduled time.
    `on_reply(request, status)` sees each request with its answer's status."""
    pool: asyncio.Queue[Conn] = asyncio.Queue()
    for _ in range(conns):
        pool.put_nowait(Conn(host, port))
    tasks: set[asyncio.Task[None]] = set()

    async def one(scheduled: float, raw: bytes) -> None:
        conn = await pool.get()
        try:
            status, body = await conn.request(raw)
            stats.latencies.append(time.perf_counter() - scheduled)
            if err := check(status, body):
                stats.errors.append(err)
            if on_reply is not None:
                on_reply(raw, status)
        finally:
            pool.put_nowait(conn)

    started = time.perf_counter()
    k = 0
    while stats.items < max_items and (now := time.perf_counter()) - started < max_seconds:
        if len(tasks) > rate * 3:  # 3 s of backlog: the rate is not sustained, stop adding
            stats.errors.append(f"backlog over 3 s after {now - started:.1f} s: rate not sustained")
            break
        scheduled = started + k / rate
        if scheduled > now:
            await asyncio.sleep(scheduled - now)
        raw, n = make()
        stats.items += n
        task = asyncio.create_task(one(scheduled, raw))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        k += 1
    await asyncio.gather(*tasks)
    stats.elapsed = time.perf_counter() - started
    while not pool.empty():
        pool.get_nowait().close()


def webhook_check(stats: Stats) -> Check:
    def check(status: int, body: bytes) -> str | None:
        if status not in (200, 202):
            return f"HTTP {status}: {body[:200]!r}"
        for r in json.loads(body)["results"]:
            stats.results[r["result"]] = stats.results.get(r["result"], 0) + 1
            if r["result"] == "error":
                return f"event error: {r}"
        return None

    return check


def popup_check(status: int, body: bytes) -> str | None:
    return None if status in (200, 404) else f"HTTP {status}: {body[:200]!r}"


# --- orchestration ----------------------------------------------------------------------------


def manager_token(db_url: str) -> str:
    from api.security import encode, issue_token, new_family
    from models.settings import load_settings

    with psycopg.connect(db_url, autocommit=True) as conn:
        uid = conn.execute(
            "INSERT INTO users (username, email, password_hash, role) "
            "VALUES ('bench-manager', 'bench@example.com', 'x', 'manager') RETURNING id"
        ).fetchone()[0]  # type: ignore[index]
        conn.execute(
            "INSERT INTO project_members (project_id, user_id) SELECT p, %s FROM unnest(%s) p",
            (uid, list(MANAGER_PROJECTS)),
        )
    settings = load_settings(database_url=db_url, jwt_secret=JWT_SECRET)
    # A new user's token epoch is 0 (users.token_epoch).
    claims = issue_token(settings, uid, "manager", "access", epoch=0, family=new_family())
    return encode(settings, claims)


def popup_maker(rng: random.Random, headers: dict[str, str], touched: list[str]) -> Make:
    formats = [
        lambda p: p,
        lambda p: "8" + p[2:],
        lambda p: f"8 ({p[2:5]}) {p[5:8]}-{p[8:10]}-{p[10:]}",
        lambda p: p[2:],
    ]

    def make() -> tuple[bytes, int]:
        r = rng.random()
        if r < 0.3 and touched:  # numbers with recent call events
            phone = rng.choice(touched)
        elif r < 0.95:
            phone = base_phone(rng.randrange(1, SPEC["rows"] + 1))
        else:  # not in the base: 404
            phone = "+7495" + str(rng.randrange(10**7)).zfill(7)
        typed = rng.choice(formats)(phone).replace(" ", "%20").replace("+", "%2B")
        return get_bytes(f"/api/softphone/number/{typed}/", headers), 1

    return make


async def run_phases(
    args: argparse.Namespace, port: int, token: str, meter: CpuMeter
) -> tuple[list[Stats], Workload]:
    host, rng = "127.0.0.1", random.Random(11)
    work = Workload(rng)
    scale = 0.25 if args.quick else 1.0
    out: list[Stats] = []

    def webhook_make(batch: int) -> Make:
        return lambda: (post_bytes(work.body(work.more(batch), batch > 1)), batch)

    warm = Stats("warm-up", "events")
    await closed_loop(warm, host, port, 8, webhook_make(1), webhook_check(warm),
                      max_items=1000, max_seconds=20)  # fmt: skip

    for per in (1, args.rate_batch):
        s = Stats(f"webhook @{args.rate:.0f}/s, {per}/request", "events")
        with meter.phase(s.name):
            await open_loop(s, host, port, args.rate / per, webhook_make(per),
                            webhook_check(s), max_items=int(args.rate * 30 * scale),
                            max_seconds=30 * scale)  # fmt: skip
        out.append(s)
    s = Stats(f"webhook max, 1/request, c={args.conns}", "events")
    with meter.phase(s.name):
        await closed_loop(s, host, port, args.conns, webhook_make(1), webhook_check(s),
                          max_items=50_000, max_seconds=20 * scale)  # fmt: skip
    out.append(s)
    s = Stats(f"webhook max, {args.batch}/request, c=8", "events")
    with meter.phase(s.name):
        await closed_loop(s, host, port, 8, webhook_make(args.batch), webhook_check(s),
                          max_items=200_000, max_seconds=20 * scale)  # fmt: skip
    out.append(s)

    await asyncio.sleep(args.settle * scale)
    touched = list(work.ended_sent)
    service = {"X-API-Key": API_KEY}
    s = Stats(f"pop-up @{args.popup_rate:.0f}/s, key", "lookups")
    with meter.phase(s.name):
        await open_loop(s, host, port, args.popup_rate, popup_maker(rng, service, touched),
                        popup_check, max_items=100_000, max_seconds=20 * scale)  # fmt: skip
    out.append(s)
    s = Stats("pop-up max, key, c=8", "lookups")
    with meter.phase(s.name):
        await closed_loop(s, host, port, 8, popup_maker(rng, service, touched), popup_check,
                          max_items=100_000, max_seconds=20 * scale)  # fmt: skip
    out.append(s)
    bearer = {"Authorization": f"Bearer {token}"}
    s = Stats("pop-up max, manager, c=8", "lookups")
    with meter.phase(s.name):
        await closed_loop(s, host, port, 8, popup_maker(rng, bearer, touched), popup_check,
                          max_items=100_000, max_seconds=15 * scale)  # fmt: skip
    out.append(s)

    hooks = Stats(f"mixed: webhook @{args.rate / 2:.0f}/s, 1/request", "events")
    cards = Stats(f"mixed: pop-up @{args.popup_rate / 2:.0f}/s, key", "lookups")
    with meter.phase("mixed"):  # one figure for both paths: they share the processes
        await asyncio.gather(
            open_loop(hooks, host, port, args.rate / 2, webhook_make(1), webhook_check(hooks),
                      max_items=int(args.rate / 2 * 20 * scale), max_seconds=20 * scale),
            open_loop(cards, host, port, args.popup_rate / 2, popup_maker(rng, service, touched),
                      popup_check, max_items=100_000, max_seconds=20 * scale),
        )  # fmt: skip
    out.extend([hooks, cards])
    return out, work


def verify(db_url: str, work: Workload, attempts_before: int) -> list[str]:
    problems: list[str] = []
    with psycopg.connect(db_url) as conn:
        stored = conn.execute("SELECT count(*) FROM call_events").fetchone()[0]  # type: ignore[index]
    attempts = attempts_of(db_url, list(work.ended_sent))
    expected = attempts_before + sum(work.ended_sent.values())
    print(f"call_events rows: {stored:,}; distinct events sent: {len(work.sent_ids):,}")
    print(f"call_attempts of the {len(work.ended_sent):,} called numbers: {attempts_before:,} -> "
          f"{attempts:,} (expected {expected:,})")  # fmt: skip
    if stored != len(work.sent_ids):
        problems.append(f"lost or extra events: {stored} stored, {len(work.sent_ids)} sent")
    if attempts != expected:
        problems.append(f"call_attempts off: {attempts} vs {expected}")
    return problems


def attempts_of(db_url: str, phones: list[str]) -> int:
    with psycopg.connect(db_url) as conn:
        return conn.execute(  # type: ignore[index]
            "SELECT coalesce(sum(call_attempts), 0) FROM phone_numbers "
            "WHERE phone_number = ANY(%s)",
            (phones,),
        ).fetchone()[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="PostgreSQL server URL (default: embedded bench server)")
    parser.add_argument("--workers", type=int, default=max(1, os.cpu_count() or 1))
    parser.add_argument("--rate", type=float, default=1000.0, help="open-loop events/s")
    parser.add_argument("--popup-rate", type=float, default=300.0, help="open-loop lookups/s")
    parser.add_argument("--conns", type=int, default=32)
    parser.add_argument("--batch", type=int, default=50, help="events/request, closed loop")
    parser.add_argument("--rate-batch", type=int, default=10, help="events/request at --rate")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--settle", type=float, default=15.0, help="pause before pop-ups (s)")
    parser.add_argument("--quick", action="store_true", help="phases 4x shorter")
    parser.add_argument("--keep", action="store_true", help="keep the database copy")
    args = parser.parse_args(argv)

    with bench_server(args.url) as server_url:
        ensure_base(database_url(server_url, BENCH_DATABASE))
        t = time.perf_counter()
        db_url, _ = clone_database(server_url, BENCH_DATABASE, RUN_DATABASE)
        print(f"copied the base to {RUN_DATABASE} in {time.perf_counter() - t:.1f} s")
        proc = None
        try:
            token = manager_token(db_url)
            proc = start_api(
                db_url,
                args.port,
                ROOT / ".numbase" / "bench-api.log",
                workers=args.workers,
                env={
                    "NUMBASE_JWT_SECRET": JWT_SECRET,
                    "NUMBASE_SOFTPHONE_WEBHOOK_SECRET": SECRET,
                    "NUMBASE_SOFTPHONE_API_KEY": API_KEY,
                },
            )
            print(f"API up: uvicorn --workers {args.workers} on 127.0.0.1:{args.port}")
            # uvloop (installed with uvicorn[standard]): half the client CPU of asyncio's loop.
            pg = postmaster_pid(db_url)
            meter = CpuMeter({"api": proc.pid, **({"pg": pg} if pg else {})})
            stats, work = uvloop.run(run_phases(args, args.port, token, meter))
        finally:
            if proc is not None:
                stop_api(proc)
        # The base's own attempts (the template is never written to) of the numbers called.
        before = attempts_of(database_url(server_url, BENCH_DATABASE), list(work.ended_sent))
        for st in stats:
            print(st.line())
            if st.results:
                print(f"{'':<26} results: {st.results}")
            if st.name in meter.spent:
                print(f"{'':<26} {meter.per_item(st.name, st.items)}")
            for err in st.errors[:5]:
                print(f"{'':<26} ERROR {err}")
        problems = verify(db_url, work, before)
        errors = sum(len(s.errors) for s in stats)
        if not args.keep:
            drop_database(server_url, RUN_DATABASE)
    print("OK: zero errors, zero lost events" if not problems and not errors else
          f"FAILED: {errors} errors; {problems}")  # fmt: skip
    return 0 if not problems and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
