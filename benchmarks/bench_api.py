"""Numbers API latency over HTTP on the 10,000,000-number base (issue 4).

    .venv/bin/python -m benchmarks.bench_api [--url postgresql://...] [--requests 200] [--pgbouncer]

Builds the base if needed (benchmarks/base.py), copies it into a scratch database (so the
bulk update cannot disturb the base other benchmarks read, and a `CREATE DATABASE ... TEMPLATE`
elsewhere is never blocked by our connections), starts the API under uvicorn (one worker) on a
free port, creates an admin and logs in through HTTP, then prints p50/p95 of N sequential
keep-alive requests each of:

* first page         GET /api/phone-numbers/?page_size=50             (no filter: 10M rows)
* page 20,000        GET ...?pagination=cursor&cursor=...             (pages 20,000-20,199)
* filtered page      GET ...?project_id=P&status=S                    (rotating P and S)
* large count        GET ...?project_id=1&page_size=1                 (2M rows: estimated)
* phone lookup       GET ...?phone=+79...                             (exact, random numbers)

then one bulk-update of 100,000 rows (ids; reverted afterwards) and a CSV export of
1,000,000 rows with rows/s and the server's peak RSS during the export.

Page 20,000 without walking 19,999 pages: a cursor is only the key of the last row before the
page (`api/keyset.py`), so the bench asks PostgreSQL once for the id at position 999,950 in id
order (an index-only scan) and encodes it; the API then serves that page like any other.
"""

from __future__ import annotations

import argparse
import random
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg

from api.keyset import encode_cursor
from benchmarks.base import (
    BENCH_DATABASE,
    BIG_PROJECT,
    PHONE_SQL,
    SPEC,
    bench_server,
    clone_database,
    database_url,
    drop_database,
    ensure_base,
)
from benchmarks.serve import start_api, stop_api

ROOT = Path(__file__).resolve().parent.parent
RUN_DATABASE = "numbase_bench_api"
JWT_SECRET = "bench-api-jwt-secret-" + "x" * 40
PASSWORD = "bench-admin-password"
PAGE = 50
# The API's session defaults (models/db.py DbTimeouts, default settings) as pgbouncer's
# connect_query sets them on each server connection, as deploy/pgbouncer/pgbouncer.ini does.
POOLED_DEFAULTS = "SET lock_timeout = 10000; SET statement_timeout = 300000"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def copy_base(server_url: str) -> str:
    url, seconds = clone_database(server_url, BENCH_DATABASE, RUN_DATABASE)
    print(f"copied the base into {RUN_DATABASE} in {seconds:.1f} s")
    return url


def create_admin(db_url: str) -> str:
    from api.security import hash_password

    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO users (username, email, password_hash, role) "
            "VALUES ('bench-admin', 'bench-admin@example.com', %s, 'admin') "
            "ON CONFLICT (username) DO UPDATE SET password_hash = excluded.password_hash",
            (hash_password(PASSWORD),),
        )
    return "bench-admin"


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed(
    client: httpx.Client, n: int, make: Callable[[int], str], check: Callable[[dict], None]
) -> tuple[float, float]:
    times = []
    for i in range(n):
        url = make(i)
        t = time.perf_counter()
        resp = client.get(url)
        times.append((time.perf_counter() - t) * 1000)
        if resp.status_code != 200:
            raise RuntimeError(f"{url}: {resp.status_code} {resp.text[:300]}")
        check(resp.json())
    return statistics.median(times), pct(times, 0.95)


def base_phone(g: int) -> str:
    return "+79" + str(g * 387420489 % 1_000_000_000).zfill(9)


def run(db_url: str, requests: int, api_db_url: str | None = None) -> dict[str, tuple]:
    """Measure every path; api_db_url is where the API connects (default db_url: direct).
    Returns {path: (p50 ms, p95 ms)} plus the bulk update and export timings."""
    figures: dict[str, tuple] = {}

    def say(line: str) -> None:
        print(line, flush=True)

    with psycopg.connect(db_url, autocommit=True) as conn:
        deep_id = conn.execute(
            "SELECT id FROM phone_numbers ORDER BY id OFFSET %s LIMIT 1", (PAGE * 19_999 - 1,)
        ).fetchone()[0]  # type: ignore[index]
        # The created_at that closes the first 1,000,000 rows of the big project (id order).
        export_before = conn.execute(
            "SELECT created_at FROM phone_numbers WHERE project_id = %s "
            "ORDER BY id OFFSET 1000000 LIMIT 1",
            (BIG_PROJECT,),
        ).fetchone()[0]  # type: ignore[index]
        update_ids = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM phone_numbers WHERE project_id = 2 AND status = 'new' "
                "ORDER BY id LIMIT 100000"
            )
        ]
        assert PHONE_SQL  # the base's phone formula, mirrored by base_phone()
        check_phone = conn.execute(
            "SELECT phone_number FROM phone_numbers WHERE id = 12345"
        ).fetchone()[0]  # type: ignore[index]
        assert check_phone == base_phone(12345), (check_phone, base_phone(12345))

    port = free_port()
    log = ROOT / ".numbase" / "bench-api-uvicorn.log"
    username = create_admin(db_url)
    env = {"NUMBASE_JWT_SECRET": JWT_SECRET, "NUMBASE_LOG_LEVEL": "WARNING"}
    if api_db_url:
        # Through the pooler: no per-connection `options` (pgbouncer refuses them); its
        # connect_query sets the session defaults instead (POOLED_DEFAULTS).
        env["NUMBASE_DB_POOLED"] = "true"
    proc = start_api(api_db_url or db_url, port, log, env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=600) as client:
            resp = client.post(
                "/api/auth/login/", json={"username": username, "password": PASSWORD}
            )
            resp.raise_for_status()
            client.headers["Authorization"] = f"Bearer {resp.json()['access']}"
            url = "/api/phone-numbers/"
            for _ in range(20):  # warm-up: connections, imports, caches
                client.get(url, params={"page_size": PAGE})
            say(f"API latency, {requests} sequential HTTP requests each (ms):")

            def row(name: str, p50: float, p95: float, aim: float) -> None:
                ok = "ok" if p95 < aim else "MISSED"
                figures[name.strip()] = (p50, p95)
                say(f"  {name:<34} p50 {p50:7.2f}   p95 {p95:7.2f}   (aim p95 < {aim:g}: {ok})")

            def one_page(body: dict) -> None:
                assert len(body["results"]) == PAGE, body

            p = timed(client, requests, lambda i: f"{url}?page_size={PAGE}", one_page)
            row("first page (10M rows, count est.)", *p, 50)

            cursors = [encode_cursor("id", deep_id)]

            def follow(body: dict) -> None:
                one_page(body)
                cursors.append(body["next_cursor"])

            p = timed(
                client,
                requests,
                lambda i: f"{url}?pagination=cursor&page_size={PAGE}&cursor={cursors[i]}",
                follow,
            )
            row("page 20,000+ via cursor", *p, 50)

            statuses = ("new", "in_progress", "success", "failed", "no_answer")
            p = timed(
                client,
                requests,
                lambda i: (
                    f"{url}?page_size={PAGE}&project_id={1 + i % 20}&status={statuses[i % 5]}"
                ),
                lambda body: None,
            )
            row("filtered page (project + status)", *p, 50)

            counts: list[tuple[int, bool]] = []
            p = timed(
                client,
                requests,
                lambda i: f"{url}?page_size=1&project_id={BIG_PROJECT}",
                lambda body: counts.append((body["count"], body["count_is_estimate"])),
            )
            row("count of a 2M-row project", *p, 50)
            exact: list[int] = []
            p_exact = timed(
                client,
                20,
                lambda i: f"{url}?page_size=1&project_id={BIG_PROJECT}&exact_count=true",
                lambda body: exact.append(body["count"]),
            )
            say(
                f"    returned {counts[0][0]:,} (estimate: {counts[0][1]}); exact 2,000,000 "
                f"with ?exact_count=true: p50 {p_exact[0]:.1f} ms, p95 {p_exact[1]:.1f} ms "
                f"over 20 requests (returned {exact[0]:,})"
            )

            rng = random.Random(7)
            phones = [base_phone(rng.randint(1, SPEC["rows"])) for _ in range(requests)]

            def found(body: dict) -> None:
                assert body["count"] == 1 and len(body["results"]) == 1, body

            p = timed(client, requests, lambda i: f"{url}?phone={phones[i]}", found)
            row("phone lookup (exact)", *p, 10)

            # Bulk update of 100,000 rows, then put them back.
            t = time.perf_counter()
            resp = client.post(
                f"{url}bulk-update/", json={"ids": update_ids, "set": {"status": "in_progress"}}
            )
            seconds = time.perf_counter() - t
            body = resp.json()
            figures["bulk-update 100k rows (s)"] = (seconds,)
            ok = "ok" if seconds < 3 else "MISSED"
            say(
                f"bulk-update of {body['updated']:,} rows (ids, status): {seconds:.2f} s "
                f"(aim < 3 s: {ok})"
            )
            t = time.perf_counter()
            resp = client.post(
                f"{url}bulk-update/", json={"ids": update_ids, "set": {"status": "new"}}
            )
            say(
                f"  and back (in_progress -> new): {time.perf_counter() - t:.2f} s, "
                f"{resp.json()['updated']:,} rows"
            )

            # Export: stream 1,000,000 rows, sample the server's RSS meanwhile.
            peak = [rss_kib(proc.pid)]
            before = peak[0]
            done = threading.Event()

            def sample() -> None:
                while not done.is_set():
                    peak[0] = max(peak[0], rss_kib(proc.pid))
                    time.sleep(0.02)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            t = time.perf_counter()
            lines = size = 0
            params = {"project_id": BIG_PROJECT, "created_before": export_before.isoformat()}
            with client.stream("GET", f"{url}export.csv", params=params) as resp:
                resp.raise_for_status()
                for chunk in resp.iter_bytes():
                    lines += chunk.count(b"\n")
                    size += len(chunk)
            seconds = time.perf_counter() - t
            done.set()
            sampler.join()
            rows = lines - 1
            figures["export rows/s"] = (rows / seconds,)
            say(
                f"export of {rows:,} rows ({size / 2**20:.0f} MiB CSV): {seconds:.2f} s, "
                f"{rows / seconds:,.0f} rows/s; server RSS {before / 1024:.0f} MiB before, "
                f"peak {peak[0] / 1024:.0f} MiB during"
            )
    finally:
        stop_api(proc)
    return figures


def compare(direct: dict[str, tuple], pooled: dict[str, tuple]) -> None:
    """The same paths direct and through pgbouncer: p50/p95 (or one figure) and their ratio."""
    print("\ndirect vs through pgbouncer (transaction pooling), same run:")
    for name, d in direct.items():
        p = pooled[name]
        cells = "   ".join(
            f"{a:9.2f} -> {b:9.2f} ({b / a:4.2f}x)" if a else f"{a} -> {b}"
            for a, b in zip(d, p, strict=True)
        )
        print(f"  {name:<34} {cells}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="server URL (default: the embedded bench server)")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--keep-copy", action="store_true", help="keep the scratch database")
    parser.add_argument("--in-place", action="store_true", help="run on the base, no copy")
    parser.add_argument(
        "--pgbouncer",
        action="store_true",
        help="run every path twice: API direct, then through a local pgbouncer (transaction "
        "pooling), and print the ratios",
    )
    args = parser.parse_args(argv)
    with bench_server(args.url) as server_url:
        base_url = database_url(server_url, BENCH_DATABASE)
        ensure_base(base_url)
        try:
            db_url = base_url if args.in_place else copy_base(server_url)
        except psycopg.errors.ObjectInUse:
            # Someone is connected to the base: measure on it directly (the bulk update is
            # reverted; only updated_at of those rows and a bench-admin user remain).
            print("the base is in use, cannot copy it: running on the base itself")
            db_url = base_url
        try:
            direct = run(db_url, args.requests)
            if args.pgbouncer:
                from models.pgbouncer import LocalPgBouncer

                with LocalPgBouncer(server_url, connect_query=POOLED_DEFAULTS) as bouncer:
                    print(
                        f"\n== the same through pgbouncer (transaction pooling, pool size "
                        f"{bouncer.default_pool_size}, 127.0.0.1:{bouncer.port})",
                        flush=True,
                    )
                    pooled = run(db_url, args.requests, bouncer.url(db_url.rsplit("/", 1)[1]))
                compare(direct, pooled)
        finally:
            if db_url != base_url and not args.keep_copy:
                drop_database(server_url, RUN_DATABASE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
