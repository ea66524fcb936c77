"""Dialing on the 10M base (issue 14): the loader's cost of the dialing stages, the back-fill,
and the latency of `callable_now=true` pages and of the callable summary.

    .venv/bin/python -m benchmarks.bench_dialing [--url SERVER_URL] [--runs 2] [--requests 200]
        [--skip-loads] [--skip-api]

1. A dialing base, built once beside the bench base (`numbase_bench_dialing`, a file copy of
   `numbase_bench`): a registry generated in the real extract format (`DEF-9xx.csv`, UTF-8,
   `АВС/ DEF;От;До;Емкость;Оператор;Регион;Территория ГАР;ИНН`; --ranges DEF ranges tiling
   +7 900..999 with gaps, spellings of the curated subjects, ~4 % in multi-zone regions, ~2 %
   nationwide ranges no subject matches) loaded by `models.dialing.registry.load_registry`
   (timed); the back-fill of all 10M rows by `models.dialing.backfill.run_batch` in its default
   batches (timed: the asset's own path); 60,000 do-not-call entries (50,000 global, 10,000 of
   project 1; 1 % of the loader's fresh numbers among them); VACUUM ANALYZE.
2. Loads (each on a fresh file copy of the dialing base, alternating, --runs times): the
   1,000,000-row input of benchmarks/bench_loader.py into project 1 (2M numbers) through
   `load_numbers` with the dialing stages on (registry lookup, zones in the stage, registry join,
   `on_dnc` count) and with `dialing=False` (the load as before issue 14: same input, same
   table, same indexes, same 10M rows; only the dialing work left out, the callable-count
   triggers of migration 0009 disabled). Ratio = without / with. After each load, 2,000
   single-row UPDATEs of a status and of a timezone (the count triggers' cost on the webhook's
   write shape and on a counted change). Each run copy is migrated to this tree's head first
   (untimed); the shared bases stay at their revision.
3. The API (uvicorn, one worker, benchmarks/serve.py) on a copy: p50/p95 of N sequential
   requests of `GET /api/phone-numbers/?project_id=1&callable_now=true` (first page and a
   cursor walk) and of `GET /api/projects/1/callable/`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg
from psycopg.types.json import Jsonb

from benchmarks.base import (
    BENCH_DATABASE,
    BIG_PROJECT,
    bench_server,
    clone_database,
    database_url,
    drop_database,
    ensure_base,
)
from benchmarks.bench_api import JWT_SECRET, PASSWORD, create_admin, free_port, pct
from benchmarks.bench_loader import PROVIDER_ID, _backend_cpu, make_input, net_new_rows
from benchmarks.serve import start_api, stop_api
from models import migrate
from models.bulk import chunked, load_numbers
from models.dialing import backfill
from models.dialing.registry import load_registry

ROOT = Path(__file__).resolve().parent.parent
DIALING_DATABASE = "numbase_bench_dialing"
RUN_DATABASE = "numbase_bench_dialing_run"
DIALING_SPEC = {"version": 1, "ranges": 400_000}
OPERATORS = ['ПАО "Мобильные ТелеСистемы"', 'ПАО "МегаФон"', 'ПАО "ВымпелКом"',
             'ООО "Т2 Мобайл"', 'ООО "Скартел"', 'АО "Тинькофф Мобайл"']  # fmt: skip
NATIONWIDE = "Российская Федерация"
# Migration 0009's triggers on phone_numbers: off in the "without" loads (the load as before
# issue 14), on in the "with" loads, so the ratio prices them with the dialing stages.
COUNT_TRIGGERS = ("callable_counts_ins", "callable_counts_upd", "callable_counts_del")
# --candidate-index: an index for the summary's GROUP BY, built in each run copy (untimed)
# before the timed load or the API run, to price it on the load and measure it on the reads.
CANDIDATE_INDEX = (
    "CREATE INDEX ix_bench_candidate ON phone_numbers (project_id, timezone, timezone_set_id)"
)


def say(msg: str) -> None:
    print(msg, flush=True)


def load_avg() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


# --- the registry ---------------------------------------------------------------------------


def write_registry(path: Path, n_ranges: int, seed: int = 14) -> None:
    """A DEF-9xx extract in the real format: `n_ranges` ranges over codes 900..999."""
    rng = random.Random(seed)
    table = json.loads((ROOT / "models" / "dialing" / "regions.json").read_text("utf-8"))
    subs = [(e["name"], [e["name"], *e["aliases"]], len(e["zones"])) for e in table["subjects"]]
    multi = [s for s in subs if s[2] > 1]
    single = [s for s in subs if s[2] == 1]
    # Big cities carry most ranges in the real extracts.
    heavy = [s for s in single if "Москва" in s[0] or "Петербург" in s[0]]
    per_code = n_ranges // 100
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("АВС/ DEF;От;До;Емкость;Оператор;Регион;Территория ГАР;ИНН\r\n")
        for code in range(900, 1000):
            cuts = sorted(rng.sample(range(1, 10**7), per_code - 1))
            starts = [0, *cuts]
            ends = [c - 1 for c in cuts] + [10**7 - 1]
            for lo, hi in zip(starts, ends, strict=True):
                r = rng.random()
                if r < 0.02:
                    continue  # a gap: not every block is allocated
                if r < 0.04:
                    region = NATIONWIDE
                else:
                    group = multi if r < 0.08 else heavy if r < 0.40 else single
                    region = rng.choice(rng.choice(group)[1])
                op = rng.randrange(len(OPERATORS))
                out.write(
                    f"{code};{lo:07d};{hi:07d};{hi - lo + 1};{OPERATORS[op].replace(';', ',')};"
                    f"{region};{region};77{op:08d}\r\n"
                )


def _meta(url: str) -> dict | None:
    try:
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT value FROM bench_meta WHERE key = 'dialing'").fetchone()
            return row[0] if row else None
    except (psycopg.OperationalError, psycopg.errors.UndefinedTable):
        return None


def ensure_dialing_base(server_url: str, n_ranges: int) -> None:
    url = database_url(server_url, DIALING_DATABASE)
    spec = {**DIALING_SPEC, "ranges": n_ranges}
    meta = _meta(url)
    if meta and meta.get("spec") == spec:
        say(f"dialing base already built: reusing ({meta})")
        return
    figures: dict[str, object] = {"spec": spec}
    if _backfilled(url):  # an earlier build got past the back-fill: finish from there
        say("dialing base: registry and back-fill already done; finishing")
        with psycopg.connect(url, autocommit=True) as conn:
            _finish(conn, figures)
        return
    say(f"building the dialing base ({load_avg()})")
    drop_database(server_url, DIALING_DATABASE)
    url, secs = clone_database(server_url, BENCH_DATABASE, DIALING_DATABASE)
    say(f"  copied the base in {secs:.1f} s")
    with tempfile.TemporaryDirectory() as tmp, psycopg.connect(url, autocommit=True) as conn:
        path = Path(tmp) / "DEF-9xx.csv"
        t = time.perf_counter()
        write_registry(path, n_ranges)
        say(f"  registry file written in {time.perf_counter() - t:.1f} s "
            f"({path.stat().st_size / 2**20:.1f} MiB)")  # fmt: skip
        t = time.perf_counter()
        result = load_registry(conn, [path], loaded_by="bench")
        figures["registry_load_s"] = round(time.perf_counter() - t, 2)
        figures["ranges"] = result.ranges
        say(f"  registry loaded: {result.ranges:,} ranges in {figures['registry_load_s']} s "
            f"({load_avg()})")  # fmt: skip
        t = time.perf_counter()
        job = backfill.open_backfill(conn)
        rows = changed = batches = 0
        while True:
            b = backfill.run_batch(conn, job)
            if b.finished:
                break
            rows, changed, batches = rows + b.rows_seen, changed + b.rows_changed, batches + 1
            if batches % 100 == 0:
                el = time.perf_counter() - t
                say(f"    back-fill: {rows:,} rows in {el:.0f} s ({rows / el:,.0f} rows/s, "
                    f"{load_avg()})")  # fmt: skip
        secs = time.perf_counter() - t
        figures.update(backfill_s=round(secs, 1), backfill_rows=rows, backfill_changed=changed,
                       backfill_load=load_avg())  # fmt: skip
        say(
            f"  back-fill: {rows:,} rows ({changed:,} changed) in {batches} batches of "
            f"{backfill.DEFAULT_BATCH:,}: {secs:.1f} s = {rows / secs:,.0f} rows/s ({load_avg()})"
        )
        _finish(conn, figures)


def _backfilled(url: str) -> bool:
    try:
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM timezone_backfills WHERE finished_at IS NOT NULL"
            ).fetchone()
            return bool(row and row[0])
    except psycopg.Error:
        return False


def _finish(conn: psycopg.Connection, figures: dict[str, object]) -> None:
    conn.execute("DELETE FROM dnc_entries WHERE source = 'bench'")
    _add_dnc(conn)
    t = time.perf_counter()
    conn.execute("VACUUM (ANALYZE) phone_numbers")
    conn.execute("ANALYZE")
    say(f"  vacuum analyze {time.perf_counter() - t:.1f} s")
    sources = conn.execute(
        "SELECT timezone_source, count(*) FROM phone_numbers GROUP BY 1 ORDER BY 2 DESC"
    ).fetchall()
    figures["sources"] = {str(k): int(v) for k, v in sources}
    say(f"  sources: {figures['sources']}")
    conn.execute(
        "INSERT INTO bench_meta VALUES ('dialing', %s) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (Jsonb(figures),),
    )


def _add_dnc(conn: psycopg.Connection) -> None:
    """50,000 global entries (base numbers), 10,000 of project 1 (half its numbers, half the
    loader's fresh ones, so the load meets some)."""
    conn.execute(
        "INSERT INTO dnc_entries (project_id, phone_number, reason, source) "
        "SELECT NULL, phone_number, 'opt-out', 'bench' FROM phone_numbers "
        "WHERE id % 200 = 7 ORDER BY id LIMIT 50000"
    )
    conn.execute(
        "INSERT INTO dnc_entries (project_id, phone_number, reason, source) "
        "SELECT %s, phone_number, 'complaint', 'bench' FROM phone_numbers "
        "WHERE project_id = %s AND id %% 97 = 3 ORDER BY id LIMIT 5000",
        (BIG_PROJECT, BIG_PROJECT),
    )
    # The loader's fresh numbers are "+7495" + a 7-digit permutation (bench_loader.make_input).
    conn.execute(
        "INSERT INTO dnc_entries (project_id, phone_number, reason, source) "
        "SELECT %s, '+7495' || lpad(((i * 7777777 + 12345) %% 10000000)::text, 7, '0'), "
        "'complaint', 'bench' FROM generate_series(0::bigint, 4999 * 157, 157) i "
        "ON CONFLICT DO NOTHING",
        (BIG_PROJECT,),
    )


# --- loads ------------------------------------------------------------------------------------


def run_load(url: str, values: list[object], dialing: bool) -> tuple[float, float, object]:
    """(wall s, CPU s of this process + its server backend, result): CPU is the steadier
    figure when other work shares the cores."""
    with psycopg.connect(url, autocommit=True) as conn:
        cpu0, server0 = time.process_time(), _backend_cpu(conn)
        started = time.perf_counter()
        result = load_numbers(
            conn, BIG_PROJECT, chunked(values, size=50_000),
            provider_id=PROVIDER_ID, geo_id=None, dialing=dialing,
        )  # fmt: skip
        wall = time.perf_counter() - started
        return wall, time.process_time() - cpu0 + _backend_cpu(conn) - server0, result


def hot_path_updates(url: str, n: int = 2000) -> tuple[float, float]:
    """(us per single-row status UPDATE, us per single-row timezone UPDATE), autocommit, on `n`
    random numbers of project 1: the SoftPhone webhook's / dial queue's write shape (no counted
    column) and a counted-column change (a delta row and the count locks when the triggers are
    on)."""
    with psycopg.connect(url, autocommit=True) as conn:
        ids = [r[0] for r in conn.execute(
            "SELECT id FROM phone_numbers WHERE project_id = %s AND id %% 997 = 1 LIMIT %s",
            (BIG_PROJECT, n),
        )]  # fmt: skip
        figures = []
        for stmt in (
            "UPDATE phone_numbers SET status = 'in_progress', call_attempts = call_attempts + 1 "
            "WHERE id = %s",
            "UPDATE phone_numbers SET timezone = 'Asia/Omsk' WHERE id = %s",
        ):
            t = time.perf_counter()
            for i in ids:
                conn.execute(stmt, (i,))
            figures.append((time.perf_counter() - t) / max(1, len(ids)) * 1e6)
        return figures[0], figures[1]


def _prepare(url: str, candidate: bool, counts: bool = True) -> None:
    """Bring the run copy to this tree's schema (untimed: the shared bases stay at the revision
    they have, so sessions on other branches can still use them); counts=False: without the
    callable-count triggers (migration 0009), as the load was before issue 14."""
    t = time.perf_counter()
    migrate.upgrade(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) callable_counts")
        if not counts:
            for trigger in COUNT_TRIGGERS:
                conn.execute(f"ALTER TABLE phone_numbers DISABLE TRIGGER {trigger}")
        if candidate:
            conn.execute("SET maintenance_work_mem = '1GB'")
            conn.execute(CANDIDATE_INDEX)
            conn.execute("VACUUM (ANALYZE) phone_numbers")
        conn.execute("CHECKPOINT")
    say(f"  copy at schema head in {time.perf_counter() - t:.1f} s "
        f"(callable-count triggers {'on' if counts else 'off'})")  # fmt: skip


def loads(server_url: str, runs: int, candidate: bool = False) -> dict[str, list[float]]:
    with psycopg.connect(database_url(server_url, DIALING_DATABASE)) as conn:
        values, expected = make_input(conn, 1_000_000)
        assert len(net_new_rows(values, conn)) == expected
    say(f"loads: {len(values):,} input rows, {expected:,} to insert, into project {BIG_PROJECT} "
        f"(geo_id None, so every number goes through the registry stage)")  # fmt: skip
    times: dict[str, list[float]] = {"with": [], "without": []}
    cpus: dict[str, list[float]] = {"with": [], "without": []}
    updates: dict[str, list[tuple[float, float]]] = {"with": [], "without": []}
    for run in range(runs):
        order = ("with", "without") if run % 2 == 0 else ("without", "with")
        for variant in order:
            url, clone_s = clone_database(server_url, DIALING_DATABASE, RUN_DATABASE)
            try:
                _prepare(url, candidate, counts=variant == "with")
                before = load_avg()
                secs, cpu, r = run_load(url, values, variant == "with")
                cpus[variant].append(cpu)
                assert r.inserted == expected, r.as_dict()  # type: ignore[attr-defined]
                times[variant].append(secs)
                say(f"  run {run + 1} dialing {variant:7s} {secs:6.1f} s  {cpu:6.1f} s CPU  "
                    f"{len(values) / secs:9,.0f} input rows/s  on_dnc {r.on_dnc:,}  "  # type: ignore[attr-defined]
                    f"({before} -> {load_avg()}; clone {clone_s:.0f} s)")  # fmt: skip
                status_us, zone_us = hot_path_updates(url)
                updates[variant].append((status_us, zone_us))
                say(
                    f"    single-row UPDATEs (count triggers {'on' if variant == 'with' else 'off'}"
                    f"): status {status_us:5.0f} us, timezone {zone_us:5.0f} us ({load_avg()})"
                )
            finally:
                drop_database(server_url, RUN_DATABASE)
    for i, name in enumerate(("status", "timezone")):
        on = statistics.median(u[i] for u in updates["with"])
        off = statistics.median(u[i] for u in updates["without"])
        say(
            f"  single-row {name} UPDATE medians: triggers on {on:.0f} us, off {off:.0f} us "
            f"(+{on - off:.0f} us)"
        )
    cw, cwo = statistics.median(cpus["with"]), statistics.median(cpus["without"])
    say(f"  CPU medians: with {cw:.1f} s, without {cwo:.1f} s: ratio = {cwo / cw:.2f}")
    w, wo = statistics.median(times["with"]), statistics.median(times["without"])
    say(f"  ({'with' if candidate else 'without'} the candidate index)")
    say(f"  medians: with {w:.1f} s, without {wo:.1f} s: ratio without/with = {wo / w:.2f} "
        f"(aim >= 0.9); runs with {times['with']}, without {times['without']}")  # fmt: skip
    return times


# --- API ----------------------------------------------------------------------------------------


def api(server_url: str, requests: int, candidate: bool = False) -> None:
    url, secs = clone_database(server_url, DIALING_DATABASE, RUN_DATABASE)
    _prepare(url, candidate)
    port = free_port()
    log = ROOT / ".numbase" / "bench-dialing-uvicorn.log"
    username = create_admin(url)
    proc = start_api(
        url, port, log, env={"NUMBASE_JWT_SECRET": JWT_SECRET, "NUMBASE_LOG_LEVEL": "WARNING"}
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
            resp = client.post(
                "/api/auth/login/", json={"username": username, "password": PASSWORD}
            )
            resp.raise_for_status()
            client.headers["Authorization"] = f"Bearer {resp.json()['access']}"
            page = f"/api/phone-numbers/?project_id={BIG_PROJECT}&callable_now=true&page_size=50"
            summary = f"/api/projects/{BIG_PROJECT}/callable/"
            for _ in range(10):
                client.get(page)
                client.get(summary)
            body = client.get(summary).json()
            say(f"API ({load_avg()}): project {BIG_PROJECT} has {body['total']:,} numbers, "
                f"{body['callable_now']:,} callable now, {body['dnc']:,} on DNC, "
                f"{len(body['zones'])} zone groups")  # fmt: skip
            first = client.get(page).json()
            say(f"  callable page: {len(first['results'])} rows; keys {sorted(first)}")

            def measure(name: str, make, n: int) -> None:
                times = []
                for i in range(n):
                    t = time.perf_counter()
                    r = client.get(make(i))
                    times.append((time.perf_counter() - t) * 1000)
                    if r.status_code != 200:
                        raise RuntimeError(f"{make(i)}: {r.status_code} {r.text[:300]}")
                p50, p95 = statistics.median(times), pct(times, 0.95)
                ok = "ok" if p95 < 50 else "MISSED"
                say(f"  {name:<44} p50 {p50:7.2f}  p95 {p95:7.2f} ms  (aim p95 < 50: {ok}; "
                    f"{load_avg()})")  # fmt: skip

            for rep in range(2):
                measure(f"[{rep + 1}] callable_now=true first page", lambda i: page, requests)
                walk = page + "&pagination=cursor"
                cursor = client.get(walk).json().get("next_cursor")
                times_cursor = []
                for _ in range(requests):
                    t = time.perf_counter()
                    r = client.get(walk + (f"&cursor={cursor}" if cursor else ""))
                    times_cursor.append((time.perf_counter() - t) * 1000)
                    cursor = r.json().get("next_cursor")
                say(f"  [{rep + 1}] callable_now=true cursor walk            "
                    f"p50 {statistics.median(times_cursor):7.2f}  "
                    f"p95 {pct(times_cursor, 0.95):7.2f} ms  ({load_avg()})")  # fmt: skip
                measure(f"[{rep + 1}] GET /api/projects/1/callable/", lambda i: summary,
                        max(10, requests // 10))  # fmt: skip
    finally:
        stop_api(proc)
        drop_database(server_url, RUN_DATABASE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="server URL (default: the embedded bench server)")
    parser.add_argument("--ranges", type=int, default=DIALING_SPEC["ranges"])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--skip-loads", action="store_true")
    parser.add_argument("--skip-api", action="store_true")
    parser.add_argument("--candidate-index", action="store_true", help=CANDIDATE_INDEX)
    args = parser.parse_args(argv)
    wall = time.perf_counter()
    with bench_server(args.url) as server_url:
        ensure_base(database_url(server_url, BENCH_DATABASE), upgrade=False)
        ensure_dialing_base(server_url, args.ranges)
        if not args.skip_loads:
            loads(server_url, args.runs, args.candidate_index)
        if not args.skip_api:
            api(server_url, args.requests, args.candidate_index)
    say(f"wall time {time.perf_counter() - wall:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
