"""The full dbt build with the lead quality marts, over the 10M base with its numbers attributed
to loads and its dialled numbers carrying a call event.

    .venv/bin/python -m benchmarks.bench_dbt [--url SERVER_URL] [--runs K] [--rows-per-load N]

The 10M base has no number_loads, no phone_numbers.source_load_id and no call_events (it was
filled before loads were recorded, and by SQL, not by SoftPhone), so the lead quality marts
would run over nothing. This benchmark builds, once, a copy of the base (database
`numbase_bench_quality`, marked in its bench_meta, reused by later runs; the base itself is never
modified) where the data looks like a system that recorded every load from the start:

* every number belongs to a load: one `number_loads` row per (project, block of N consecutive
  ids), N = 20,000 by default (812 loads on the 10M base; a block that straddles two
  projects' id ranges gives one load per project), kind `sftp`, loaded at the earliest
  created_at of its numbers, provider the block's, counts as the loader would write them
  (10% more rows read than inserted: 4% invalid, 6% duplicates), a lead cost on every other
  load;
* `phone_numbers.source_load_id` set for all 10M rows by one table rewrite (ALTER COLUMN ...
  USING, indexes rebuilt in bulk), so the table is as compact as the base's;
* one `call_result` event per dialled number (~3,000,000 rows; status from the number, occurred
  at its last_call_at minus a day per further attempt, so first call < last call).

Then, on a file-level copy of that database, `dbt build` (all models and data tests) K times;
for each: wall, dbt node time, start-up, and the five slowest nodes of the last one.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from benchmarks.base import (
    BENCH_DATABASE,
    bench_server,
    clone_database,
    database_url,
    drop_database,
    ensure_base,
)
from benchmarks.bench_conversion import Dbt

QUALITY_DATABASE = "numbase_bench_quality"
RUN_DATABASE = "numbase_bench_dbt"
# Load ids are (block * 256 + project_id): unique for the base's 200 projects.
_ID_STRIDE = 256

PREPARE = [
    # A load per (project, id block): the base's ids come in 50,000-row per-project blocks.
    """
    INSERT INTO number_loads (id, kind, project_id, provider_id, source, dedupe_scope,
                              rows_read, inserted, duplicate_in_input, already_present,
                              invalid, lead_cost, created_at, updated_at)
    SELECT id, 'sftp', project_id, 1 + block % 20,
           'inbox/bench/' || block || '-' || project_id || '.csv', 'project',
           n * 11 / 10, n, n * 2 / 100, n * 4 / 100, n * 11 / 10 - n - n * 2 / 100 - n * 4 / 100,
           CASE WHEN block % 2 = 0 THEN round(n * 0.05, 2) END, loaded_at, loaded_at
    FROM (SELECT id / {n} AS block, project_id, (id / {n}) * {stride} + project_id AS id,
                 count(*) AS n, min(created_at) AS loaded_at
          FROM phone_numbers GROUP BY id / {n}, project_id) AS b
    """,
    "SELECT setval(pg_get_serial_sequence('number_loads', 'id'), max(id)) FROM number_loads",
    # One rewrite instead of a 10M-row UPDATE (which would leave every row dead once and update
    # every index row by row); the FK to number_loads is re-checked by PostgreSQL.
    """
    ALTER TABLE phone_numbers ALTER COLUMN source_load_id TYPE bigint
        USING ((id / {n}) * {stride} + project_id)
    """,
    # The event FKs point at the rows being read: no per-row trigger check (superuser only).
    "SET session_replication_role = replica",
    """
    INSERT INTO call_events (event_id, event_type, phone_number, phone_number_id, project_id,
                             matched, payload, occurred_at, received_at)
    SELECT 'bench-' || id, 'call_result', phone_number, id, project_id, true,
           jsonb_build_object('status', status),
           last_call_at - interval '1 day' * (call_attempts - 1),
           last_call_at - interval '1 day' * (call_attempts - 1)
    FROM phone_numbers WHERE call_attempts > 0
    """,
    "RESET session_replication_role",
    "VACUUM (ANALYZE) phone_numbers",
    "VACUUM (ANALYZE) number_loads",
    "VACUUM (ANALYZE) call_events",
    "INSERT INTO bench_meta VALUES ('quality', %(meta)s)",
]


def ensure_quality(server_url: str, rows_per_load: int) -> None:
    """The attributed copy of the base (built once; rebuilt if built with another N)."""
    url = server_url.rsplit("/", 1)[0] + "/" + QUALITY_DATABASE  # not created if missing
    meta = f'{{"rows_per_load": {rows_per_load}}}'
    try:
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT value FROM bench_meta WHERE key = 'quality'").fetchone()
            if row and row[0] == {"rows_per_load": rows_per_load}:
                print("attributed copy already built: reusing", file=sys.stderr)
                return
    except (psycopg.OperationalError, psycopg.errors.UndefinedTable):
        pass  # not built yet (or half built: clone_database below starts it over)
    started = time.perf_counter()
    clone_database(server_url, BENCH_DATABASE, QUALITY_DATABASE)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '1GB'")
        for statement in PREPARE:
            t = time.perf_counter()
            # ALTER TABLE takes no bind parameters: the integers go into the text.
            text = statement.format(stride=_ID_STRIDE, n=int(rows_per_load))
            params = {"meta": meta} if "%(" in text else None
            conn.execute(text, params)  # type: ignore[arg-type]  # our constants
            print(f"  {statement.split()[0:3]} {time.perf_counter() - t:.1f} s", file=sys.stderr)
    print(f"attributed copy built in {time.perf_counter() - started:.1f} s", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="server URL (default: the embedded bench server)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rows-per-load", type=int, default=20_000)
    args = parser.parse_args(argv)
    with bench_server(args.url) as server_url:
        ensure_base(database_url(server_url, BENCH_DATABASE))
        ensure_quality(server_url, args.rows_per_load)
        url, copied = clone_database(server_url, QUALITY_DATABASE, RUN_DATABASE)
        print(f"attributed copy cloned in {copied:.1f} s", file=sys.stderr)
        try:
            with psycopg.connect(url) as conn:
                seen = conn.execute(
                    "SELECT (SELECT count(*) FROM number_loads), "
                    "(SELECT count(*) FROM phone_numbers WHERE source_load_id IS NOT NULL), "
                    "(SELECT count(*) FROM call_events)"
                ).fetchone()
            assert seen is not None
            with tempfile.TemporaryDirectory() as tmp:
                dbt = Dbt(url, Path(tmp))
                parse = dbt("parse")
                print(f"warm-up parse (full): {parse['wall']:.1f} s", file=sys.stderr)
                builds = []
                for run in range(args.runs):
                    builds.append(dbt("build"))
                    b = builds[-1]
                    print(f"run {run + 1} dbt build {b['wall']:.1f} s wall, nodes "
                          f"{b['nodes']:.1f} s", file=sys.stderr, flush=True)  # fmt: skip
                slow = dbt.slowest()
        finally:
            drop_database(server_url, RUN_DATABASE)
    loads, attributed, events = seen
    print(f"data: {attributed:,} numbers attributed to {loads:,} loads, {events:,} call events")
    walls = [b["wall"] for b in builds]
    m = {k: statistics.median(b[k] for b in builds) for k in builds[0]}
    print(f"dbt build (all models + data tests), median of {args.runs}: {m['wall']:.1f} s wall "
          f"(runs {', '.join(f'{w:.1f}' for w in walls)}), nodes {m['nodes']:.1f} s, "
          f"start-up {m['startup']:.1f} s  (aim < 30 s)")  # fmt: skip
    print("slowest nodes of the last build: " + ", ".join(f"{n} {t:.2f} s" for n, t in slow))
    return 0


if __name__ == "__main__":
    sys.exit(main())
