"""What the callable-count triggers (migration 0009_callable_counts) cost on the hot paths, each
priced against the same work with the triggers disabled, in the same run, alternating:

    .venv/bin/python -m benchmarks.bench_count_triggers [--url SERVER_URL] [--rows 1000000]
        [--updates 3000] [--runs 3]

* a `load_numbers` of --rows fresh numbers (dialing on) into an empty project of a scratch
  database with 60,000 DNC entries, 1 % of the load's numbers among them;
* --updates single-row `UPDATE phone_numbers SET status` statements in autocommit (the shape of
  the SoftPhone webhook's and the dial queue's writes: no counted column changes);
* --updates single-row timezone changes (a counted column: delta row and locks).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import psycopg

from benchmarks.base import bench_server, database_url, drop_database
from models import migrate
from models.bulk import chunked, load_numbers

DATABASE = "numbase_bench_count_triggers"
TRIGGERS = ("callable_counts_ins", "callable_counts_upd", "callable_counts_del")


def say(msg: str) -> None:
    print(msg, flush=True)


def load_avg() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def _set_triggers(conn: psycopg.Connection, on: bool) -> None:
    for t in TRIGGERS:
        # ENABLE ALWAYS, as the migration leaves them (the loader's replica mode keeps them).
        state = "ENABLE ALWAYS" if on else "DISABLE"
        conn.execute(f"ALTER TABLE phone_numbers {state} TRIGGER {t}")


def _fresh(conn: psycopg.Connection, rows: int) -> int:
    conn.execute("TRUNCATE phone_numbers, dnc_entries, callable_counts, projects CASCADE")
    pid = conn.execute(
        "INSERT INTO projects (code, name) VALUES ('trg', 'Trigger bench') RETURNING id"
    ).fetchone()[0]
    # 1 % of the load's numbers (every 100th), the rest numbers it does not have; a sixth of
    # the entries the project's, the others global.
    conn.execute(
        "INSERT INTO dnc_entries (project_id, phone_number, reason, source) "
        "SELECT CASE WHEN i %% 6 = 0 THEN %s END, phone, 'bench', 'bench' FROM ("
        " SELECT i, '+7495' || lpad((i * 100 * 7919 %% 10000000)::text, 7, '0') AS phone"
        " FROM generate_series(1, %s / 100) i"
        " UNION ALL SELECT i, '+7496' || lpad(i::text, 7, '0')"
        " FROM generate_series(1, 60000 - %s / 100) i) e ON CONFLICT DO NOTHING",
        (pid, rows, rows),
    )
    conn.execute("VACUUM ANALYZE dnc_entries")
    return int(pid)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--updates", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    values = [f"+7495{(i * 7919) % 10_000_000:07d}" for i in range(1, args.rows + 1)]
    with bench_server(args.url) as server:
        drop_database(server, DATABASE)
        url = database_url(server, DATABASE)
        migrate.upgrade(url)
        times: dict[str, dict[bool, list[float]]] = {"load": {True: [], False: []},
                                                     "status": {True: [], False: []},
                                                     "zone": {True: [], False: []}}  # fmt: skip
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                for run in range(args.runs):
                    for on in (True, False) if run % 2 == 0 else (False, True):
                        pid = _fresh(conn, args.rows)
                        _set_triggers(conn, on)
                        conn.execute("CHECKPOINT")
                        t = time.perf_counter()
                        r = load_numbers(conn, pid, chunked(values, size=50_000))
                        load_s = time.perf_counter() - t
                        times["load"][on].append(load_s)
                        if on:  # the triggers counted every row of the load
                            kept = conn.execute(
                                "SELECT sum(numbers) FROM callable_counts"
                            ).fetchone()[0]
                            assert kept == r.inserted, (kept, r.inserted)
                        ids = [row[0] for row in conn.execute(
                            "SELECT id FROM phone_numbers ORDER BY md5(id::text) LIMIT %s",
                            (args.updates,),
                        )]  # fmt: skip
                        t = time.perf_counter()
                        for i in ids:
                            conn.execute(
                                "UPDATE phone_numbers SET status = 'in_progress', "
                                "call_attempts = call_attempts + 1 WHERE id = %s", (i,),
                            )  # fmt: skip
                        status_us = (time.perf_counter() - t) / len(ids) * 1e6
                        times["status"][on].append(status_us)
                        t = time.perf_counter()
                        for i in ids:
                            conn.execute(
                                "UPDATE phone_numbers SET timezone = 'Asia/Omsk' WHERE id = %s",
                                (i,),
                            )
                        zone_us = (time.perf_counter() - t) / len(ids) * 1e6
                        times["zone"][on].append(zone_us)
                        say(f"  run {run + 1} triggers {'on ' if on else 'off'}: load "
                            f"{r.inserted:,} rows {load_s:5.1f} s, status update {status_us:6.0f}"
                            f" us, zone update {zone_us:6.0f} us  ({load_avg()})")  # fmt: skip
        finally:
            drop_database(server, DATABASE)
    for name, unit in (("load", "s"), ("status", "us"), ("zone", "us")):
        on, off = statistics.median(times[name][True]), statistics.median(times[name][False])
        say(
            f"{name:7s} median on {on:8.2f} {unit}, off {off:8.2f} {unit}: "
            f"off/on = {off / on:.2f}; runs on {times[name][True]}, off {times[name][False]}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
