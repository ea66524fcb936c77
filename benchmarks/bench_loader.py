"""Loader throughput: a 1,000,000-row load into the 10M base, beside raw COPY, and against the
plan's literal index list.

    .venv/bin/python -m benchmarks.bench_loader [--url SERVER_URL] [--rows N] [--runs K]
    .venv/bin/python -m benchmarks.bench_loader --dedupe [--runs K]   # dedupe scope cost

What runs (each on a fresh file-level copy of the base, `CREATE DATABASE ... TEMPLATE
numbase_bench STRATEGY FILE_COPY`, so every variant starts from the same bytes and the same
cold shared buffers, and the base itself is never modified):

1. loader   - `models.bulk.load_numbers` of the messy input into project 1 (2M numbers):
              normalise, stage, dedupe, ON CONFLICT, one transaction, commit included.
2. copy     - raw psycopg COPY (hand-built text blocks, the fastest client path) of exactly the
              rows the loader ends up inserting, already normalised and deduplicated (within the
              input and against the project), in input order, into the same phone_numbers table:
              same columns, defaults, checks, foreign keys, indexes and the same 10M rows, i.e.
              an identical table (it is the table, copied).
3. copy-sorted - the same rows sorted by phone (the order the loader inserts in), so the
              baseline gets the same index locality the loader gives itself.
4. literal  - the loader again, into a copy of the base whose phone_numbers carries the plan's
              literal index list instead of ours (see LITERAL_INDEXES).
5. with --floors, the loader into copies with fewer of our indexes, to bound what any index
   design could buy: `aims-only` keeps the primary key, the unique (phone_number, project_id)
   and (project_id, status, id) - all the read-latency aims need; `floor` only the primary key
   and the unique index the deduplication needs.

--dedupe runs only three variants, alternating, each on a fresh clone: the loader with the
project's default `project` dedupe scope, with `all_projects` (docs/lead-quality.md), where the 5%
numbers of another project are skipped as duplicate_elsewhere, and with `project` plus a 30-day
call window (numbers of any project whose last_call_at is within the window are skipped; the
base's last_call_at spread over 2024-2044 makes ~30% of the other project's numbers "recent").
All three record their load (number_loads) as the API and SFTP imports do. It prints
project-scope time / each wider rule's time (aim >= 0.85). A base built before migration 0007
is brought to head on each clone (outside the timing).

Input (deterministic): ~83% new numbers (+7495...), 5% numbers of another project (new here),
10% numbers already in project 1, 1% invalid, 1% in-file duplicates in another format; eight
messy formats (spaces, dashes, parentheses, 8-prefix, bare NSN, int, NBSP).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

import psycopg
from psycopg import sql

from benchmarks.base import (
    BENCH_DATABASE,
    BIG_PROJECT,
    bench_server,
    clone_database,
    create_ddl,
    database_url,
    drop_database,
    drop_ddl,
    ensure_base,
    table_ddl,
)
from models import bulk_insert, bulk_stage, load_dedupe, migrate, number_loads
from models.bulk import LoadResult, RowChunk, chunked, load_numbers
from models.bulk_dialing import Zones
from models.bulk_types import RejectSink
from models.number_loads import LoadSource
from models.phones import normalize_many

LITERAL_DATABASE = "numbase_bench_literal"
# --floors: our secondary indexes dropped in each reduced variant.
_EXTRA = ["ix_phone_numbers_project_id_id", "ix_phone_numbers_status_id",
          "ix_phone_numbers_provider_id", "ix_phone_numbers_geo_id",
          "ix_phone_numbers_created_at_brin"]  # fmt: skip
FLOOR_DROPS = {"aims-only": _EXTRA, "floor": [*_EXTRA, "ix_phone_numbers_project_status_id"]}
RUN_DATABASE = "numbase_bench_run"
EXPLAIN_ROWS = 300_000
PROVIDER_ID, GEO_ID = 3, 7
OTHER_PROJECT = 2
# ../shared/spec/backend_plan_dev1.md, table 5, plus UNIQUE (project_id, phone_number).
LITERAL_INDEXES = [
    "CREATE INDEX idx_phone_numbers_phone ON phone_numbers (phone_number)",
    "CREATE INDEX idx_phone_numbers_project_id ON phone_numbers (project_id)",
    "CREATE INDEX idx_phone_numbers_status ON phone_numbers (status)",
    "CREATE INDEX idx_phone_numbers_provider_id ON phone_numbers (provider_id)",
    "CREATE INDEX idx_phone_numbers_geo_id ON phone_numbers (geo_id)",
    "CREATE INDEX idx_phone_numbers_created_at ON phone_numbers (created_at DESC)",
    "ALTER TABLE phone_numbers ADD CONSTRAINT uq_phone_numbers_project_phone "
    "UNIQUE (project_id, phone_number)",
]


# --- input ------------------------------------------------------------------------------------


def _messy(e164: str, k: int) -> object:
    nsn = e164[2:]  # "+7" + 10 digits
    a, b, c, d = nsn[:3], nsn[3:6], nsn[6:8], nsn[8:]
    match k % 8:
        case 0:
            return f"+7 ({a}) {b}-{c}-{d}"
        case 1:
            return f"8 {a} {b} {c} {d}"
        case 2:
            return "7" + nsn
        case 3:
            return nsn
        case 4:
            return f"+7-{a}-{b}-{c}{d}"
        case 5:
            return int("7" + nsn)
        case 6:
            return f"8({a}){b}{c}{d}"
        case _:
            return f"+7\u00a0{a}\u00a0{b}{c}{d}"


INVALID = ["n/a", "12345", "+7 495 123", "", "abc-def", "+7 (495) 123-45-67 ext. 12", None]


def make_input(conn: psycopg.Connection, rows: int, seed: int = 7) -> tuple[list[object], int]:
    """(raw values in file order, expected inserted count)."""
    rnd = random.Random(seed)
    n_present, n_other = rows // 10, rows // 20
    n_invalid, n_dups = rows // 100, rows // 100
    n_fresh = rows - n_present - n_other - n_invalid - n_dups
    present = [
        r[0]
        for r in conn.execute(
            "SELECT phone_number FROM phone_numbers WHERE project_id = %s "
            "ORDER BY md5(id::text) LIMIT %s",
            (BIG_PROJECT, n_present),
        )
    ]
    other = [
        r[0]
        for r in conn.execute(
            "SELECT phone_number FROM phone_numbers WHERE project_id = %s "
            "ORDER BY md5(id::text) LIMIT %s",
            (OTHER_PROJECT, n_other),
        )
    ]
    # "+7495" + a 7-digit permutation: never in the base (which is all "+79...").
    fresh = [f"+7495{(i * 7_777_777 + 12_345) % 10_000_000:07d}" for i in range(n_fresh)]
    originals = fresh + other
    values: list[object] = [_messy(p, rnd.randrange(8)) for p in originals + present]
    values += [_messy(p, rnd.randrange(8)) for p in rnd.sample(originals, n_dups)]
    values += [rnd.choice(INVALID) for _ in range(n_invalid)]
    rnd.shuffle(values)
    return values, len(originals)


def net_new_rows(values: list[object], conn: psycopg.Connection) -> list[str]:
    """The E.164 numbers the loader will insert, first occurrences, in input order."""
    present = {
        r[0]
        for r in conn.execute(
            "SELECT phone_number FROM phone_numbers WHERE project_id = %s", (BIG_PROJECT,)
        )
    }
    out, seen = [], set()
    phones, _ = normalize_many(values)
    for p in phones:
        if p is not None and p not in seen and p not in present:
            seen.add(p)
            out.append(p)
    return out


# --- databases -------------------------------------------------------------------------------


def ensure_literal(server_url: str) -> None:
    """A copy of the base whose phone_numbers has the plan's literal indexes (built once)."""
    url = server_url.rsplit("/", 1)[0] + "/" + LITERAL_DATABASE
    try:
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT value FROM bench_meta WHERE key = 'literal'").fetchone()
            if row:
                print("literal-index copy already built: reusing")
                return
    except psycopg.OperationalError:
        pass
    started = time.perf_counter()
    clone_database(server_url, BENCH_DATABASE, LITERAL_DATABASE)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '1GB'")
        cons, idx = table_ddl(conn)
        unique = [c for c in cons if c[1].upper().startswith("UNIQUE")]
        drop_ddl(conn, unique, idx)
        create_ddl(conn, [], [(ddl.split()[2], ddl) for ddl in LITERAL_INDEXES])
        conn.execute("VACUUM (ANALYZE) phone_numbers")
        conn.execute("INSERT INTO bench_meta VALUES ('literal', '{}')")
    print(f"literal-index copy built in {time.perf_counter() - started:.1f} s")


# --- the timed runs --------------------------------------------------------------------------


def _backend_cpu(conn: psycopg.Connection) -> float:
    """CPU seconds used so far by this connection's server process (same machine only): a
    steadier figure than wall time when other work shares the two cores."""
    pid = conn.info.backend_pid
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Timed:
    """Wraps the chunk stream to note when the loader has staged everything."""

    def __init__(self, chunks: Iterable[RowChunk]) -> None:
        self.chunks = chunks
        self.exhausted_at = 0.0

    def __iter__(self) -> Iterator[RowChunk]:
        yield from self.chunks
        self.exhausted_at = time.perf_counter()


def run_loader(url: str, values: list[object], *, record: bool = False) -> dict[str, Any]:
    with psycopg.connect(url, autocommit=True) as conn:
        stream = _Timed(chunked(values, size=50_000))
        cpu0, server0 = time.process_time(), _backend_cpu(conn)
        started = time.perf_counter()
        result = load_numbers(
            conn, BIG_PROJECT, stream, provider_id=PROVIDER_ID, geo_id=GEO_ID,
            record=LoadSource("api", source="bench") if record else None,
        )  # fmt: skip
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu0 + _backend_cpu(conn) - server0
    return {
        "seconds": seconds,
        "cpu": cpu,
        "stage_seconds": stream.exhausted_at - started,
        "result": result,
    }


def run_copy(url: str, phones: list[str]) -> tuple[float, float]:
    tail = f"\t{BIG_PROJECT}\t{PROVIDER_ID}\t{GEO_ID}\n"
    with psycopg.connect(url, autocommit=True) as conn:
        cpu0, server0 = time.process_time(), _backend_cpu(conn)
        started = time.perf_counter()
        with (
            conn.transaction(),
            conn.cursor() as cur,
            cur.copy(
                "COPY phone_numbers (phone_number, project_id, provider_id, geo_id) FROM STDIN"
            ) as copy,
        ):
            for lo in range(0, len(phones), 50_000):
                copy.write("".join([p + tail for p in phones[lo : lo + 50_000]]))
        seconds = time.perf_counter() - started
        return seconds, time.process_time() - cpu0 + _backend_cpu(conn) - server0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="server URL (default: the embedded bench server)")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=1, help="repeat each variant K times")
    parser.add_argument("--no-literal", action="store_true", help="skip the literal-index run")
    parser.add_argument("--floors", action="store_true", help="also load with fewer indexes")
    parser.add_argument(
        "--dedupe", action="store_true", help="only: project vs all_projects dedupe scope"
    )
    parser.add_argument(
        "--explain", action="store_true", help="with --dedupe: EXPLAIN ANALYZE each INSERT"
    )
    args = parser.parse_args(argv)
    wall = time.perf_counter()
    with bench_server(args.url) as server_url:
        ensure_base(database_url(server_url, BENCH_DATABASE))
        base_url = server_url.rsplit("/", 1)[0] + "/" + BENCH_DATABASE
        with psycopg.connect(base_url) as conn:
            t = time.perf_counter()
            values, expected = make_input(conn, args.rows)
            new_rows = net_new_rows(values, conn)
            print(f"input: {len(values):,} rows, {expected:,} to insert "
                  f"(built in {time.perf_counter() - t:.1f} s)")  # fmt: skip
        assert len(new_rows) == expected, (len(new_rows), expected)
        sorted_rows = sorted(new_rows)
        if args.dedupe and args.explain:
            # The plans' shapes, not a timing: 300k of the (shuffled) input rows are enough.
            return _explain_dedupe(server_url, values[:EXPLAIN_ROWS])
        if args.dedupe:
            return _dedupe_runs(server_url, values, expected, args.runs, wall)
        if not args.no_literal:
            ensure_literal(server_url)

        times: dict[str, list[float]] = {}
        cpus: dict[str, list[float]] = {}
        for run in range(args.runs):
            variants = ["loader", "copy", "copy-sorted", "literal"]
            for variant in variants + (list(FLOOR_DROPS) if args.floors else []):
                if variant == "literal" and args.no_literal:
                    continue
                template = LITERAL_DATABASE if variant == "literal" else BENCH_DATABASE
                url, clone_s = clone_database(server_url, template, RUN_DATABASE)
                try:
                    if variant in FLOOR_DROPS:
                        with psycopg.connect(url, autocommit=True) as conn:
                            for index in FLOOR_DROPS[variant]:
                                conn.execute(f"DROP INDEX {index}")  # our own constant names
                    if variant not in ("copy", "copy-sorted"):
                        out = run_loader(url, values)
                        r = out["result"]
                        assert r.inserted == expected, r.as_dict()
                        seconds, cpu = out["seconds"], out["cpu"]
                        detail = (
                            f"stage {out['stage_seconds']:.1f} s, insert+commit "
                            f"{seconds - out['stage_seconds']:.1f} s; read {r.read:,} "
                            f"inserted {r.inserted:,} dup {r.duplicate_in_input:,} "
                            f"present {r.already_present:,} invalid {r.invalid:,}"
                        )
                    else:
                        rows = sorted_rows if variant == "copy-sorted" else new_rows
                        seconds, cpu = run_copy(url, rows)
                        detail = f"{len(rows):,} rows copied"
                    print(
                        f"run {run + 1} {variant:12s} {seconds:6.1f} s wall  {cpu:6.1f} s CPU  "
                        f"({detail}; clone {clone_s:.0f} s)",
                        flush=True,
                    )
                    times.setdefault(variant, []).append(seconds)
                    cpus.setdefault(variant, []).append(cpu)
                finally:
                    drop_database(server_url, RUN_DATABASE)

    n_in, n_new = len(values), len(new_rows)
    print(f"\nsummary: {args.runs} run(s), medians; every variant ends with the same "
          f"{n_new:,} new rows in phone_numbers")  # fmt: skip
    for label, data in (("wall", times), ("CPU (client + server process)", cpus)):
        med = {k: statistics.median(v) for k, v in data.items()}
        print(f" by {label} seconds:")
        print(f"  loader          {med['loader']:6.1f} s  {n_in / med['loader']:9,.0f} input rows/s"
              f"  {n_new / med['loader']:9,.0f} inserted rows/s")  # fmt: skip
        for k in ("copy", "copy-sorted"):
            print(f"  raw {k:11s} {med[k]:6.1f} s  {n_new / med[k]:9,.0f} rows/s")
        best = min(med["copy"], med["copy-sorted"])
        print(f"  ratio loader : raw COPY in input order = {med['copy'] / med['loader']:.2f}")
        print(
            f"  ratio loader : best raw COPY           = {best / med['loader']:.2f}  (aim >= 0.8)"
        )
        if "literal" in med:
            print(f"  loader, plan's literal indexes {med['literal']:6.1f} s  "
                  f"{n_in / med['literal']:9,.0f} input rows/s")  # fmt: skip
            print(f"  our indexes vs literal: {med['literal'] / med['loader']:.2f}x  (aim >= 2x)")
            for k in FLOOR_DROPS:
                if k in med:
                    print(f"  loader, {k:9s} indexes      {med[k]:6.1f} s: literal / {k} = "
                          f"{med['literal'] / med[k]:.2f}x")  # fmt: skip
    print(f"wall time {time.perf_counter() - wall:.1f} s")
    return 0


# variant -> (projects.dedupe_scope, projects.dedupe_window_days)
DEDUPE_VARIANTS: dict[str, tuple[str, int | None]] = {
    "scope-project": ("project", None),
    "scope-all-projects": ("all_projects", None),
    "scope-window-30d": ("project", 30),
}


def _dedupe_runs(
    server_url: str, values: list[object], expected: int, runs: int, wall: float
) -> int:
    """The loader under each dedupe scope, alternating, each on a fresh clone of the base."""
    times: dict[str, list[float]] = {}
    for run in range(runs):
        for variant, (scope, window) in DEDUPE_VARIANTS.items():
            url, clone_s = clone_database(server_url, BENCH_DATABASE, RUN_DATABASE)
            try:
                migrate.upgrade(url)  # a base from before 0007_quality: add its columns
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute(
                        "UPDATE projects SET dedupe_scope = %s, dedupe_window_days = %s "
                        "WHERE id = %s",
                        (scope, window, BIG_PROJECT),
                    )
                    conn.execute("CHECKPOINT")
                out = run_loader(url, values, record=True)
                r = out["result"]
                # Every new number is inserted or, under all_projects, counted elsewhere.
                assert r.inserted + r.duplicate_elsewhere == expected, r.as_dict()
                assert variant != "scope-project" or r.duplicate_elsewhere == 0
                print(
                    f"run {run + 1} {variant:18s} {out['seconds']:6.1f} s wall "
                    f"{out['cpu']:6.1f} s CPU (inserted {r.inserted:,}, elsewhere "
                    f"{r.duplicate_elsewhere:,}, present {r.already_present:,}; "
                    f"clone {clone_s:.0f} s)",
                    flush=True,
                )
                times.setdefault(variant, []).append(out["seconds"])
            finally:
                drop_database(server_url, RUN_DATABASE)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\nsummary: {runs} run(s), medians, {len(values):,} input rows")
    for k, v in med.items():
        print(f"  {k:18s} {v:6.1f} s  {len(values) / v:9,.0f} input rows/s")
    for k in DEDUPE_VARIANTS:
        if k != "scope-project":
            ratio = med["scope-project"] / med[k]
            print(f"  ratio project scope : {k[6:]:12s} = {ratio:.2f}  (aim >= 0.85)")
    print(f"wall time {time.perf_counter() - wall:.1f} s")
    return 0


# The `skipped` CTE as first written (a LATERAL ... ORDER BY ... LIMIT 1 per staged number),
# EXPLAINed beside load_dedupe.ELSEWHERE to show what the rewrite bought.
_LATERAL_ELSEWHERE = sql.SQL(
    """
    skipped AS (
        INSERT INTO {elsewhere} (line, phone, other)
        SELECT f.line, f.phone, m.code
        FROM firsts f
        CROSS JOIN LATERAL (
            SELECT pn.project_id = %(project)s AS here, p.code
            FROM phone_numbers pn JOIN projects p ON p.id = pn.project_id
            WHERE pn.phone_number = f.phone
              AND (pn.project_id = %(project)s
                   OR (%(all_projects)s AND NOT p.is_deleted)
                   OR pn.last_call_at >= %(since)s)
            ORDER BY pn.project_id = %(project)s DESC, p.code
            LIMIT 1
        ) m
        WHERE NOT m.here
        RETURNING phone
    ),"""
)


def _explain_dedupe(server_url: str, values: list[object]) -> int:
    """The loader's INSERT under each dedupe rule, EXPLAIN (ANALYZE, BUFFERS), on one clone,
    each rolled back (the later ones see a warmer cache: read the plans, not the totals)."""
    url, _ = clone_database(server_url, BENCH_DATABASE, RUN_DATABASE)
    try:
        migrate.upgrade(url)
        with psycopg.connect(url, autocommit=True) as conn:
            plans = [(v, rule, False) for v, rule in DEDUPE_VARIANTS.items()]
            plans.insert(2, ("scope-all-projects", DEDUPE_VARIANTS["scope-all-projects"], True))
            for variant, (scope, window), lateral in plans:
                conn.execute(
                    "UPDATE projects SET dedupe_scope = %s, dedupe_window_days = %s WHERE id = %s",
                    (scope, window, BIG_PROJECT),
                )
                with conn.transaction(force_rollback=True):
                    rule = number_loads.dedupe_rule(conn, BIG_PROJECT)
                    result = LoadResult()
                    zones = Zones.read(conn, GEO_ID)
                    stage = bulk_stage.create(conn)
                    bulk_stage.copy_chunks(
                        conn, stage, chunked(values), "RU", result, RejectSink(result, 0), zones
                    )
                    zones.write_sets(conn)
                    elsewhere = None if rule.project_only else load_dedupe.create_stage(conn)
                    current, load_dedupe.ELSEWHERE = (
                        load_dedupe.ELSEWHERE,
                        (_LATERAL_ELSEWHERE if lateral else load_dedupe.ELSEWHERE),
                    )
                    try:
                        statement, params = bulk_insert.insert_statement(
                            conn, stage, BIG_PROJECT, PROVIDER_ID, GEO_ID, None, rule, elsewhere
                        )
                    finally:
                        load_dedupe.ELSEWHERE = current
                    with bulk_insert.insert_settings(conn):
                        plan = conn.execute(
                            sql.SQL("EXPLAIN (ANALYZE, BUFFERS) ") + statement, params
                        ).fetchall()
                print(f"--- {variant}{' (the LATERAL formulation)' if lateral else ''}")
                print("\n".join(r[0] for r in plan), flush=True)
    finally:
        drop_database(server_url, RUN_DATABASE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
