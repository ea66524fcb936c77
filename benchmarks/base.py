"""Build the 10,000,000-number benchmark base (200 projects), fast and idempotently.

    .venv/bin/python -m benchmarks.base                # embedded server in .numbase/bench-pg
    .venv/bin/python -m benchmarks.base --url postgresql://u@host/db [--force]

The schema comes from the migrations; the rows from one set-based `INSERT ... SELECT
generate_series` with phone_numbers' constraints and indexes dropped, then rebuilt (bulk index
builds are several times cheaper than maintaining them row by row), then VACUUM ANALYZE (visibility
map for index-only counts, fresh statistics). `ensure_base(url)` skips all of it when the base is
already there, so every benchmark can call it.

Shape (deterministic):
* projects: 1 x 2,000,000; 4 x 500,000; 15 x 200,000; 180 x ~16,667 (= 10,000,000);
  laid out in shuffled blocks of 50,000 so a project's rows are not all contiguous on disk.
* phones: "+79" + a 9-digit permutation of the row number (unique, random order on disk).
  Benchmarks generate new numbers as "+7495..." so they never collide with the base.
* status: 70% new, 5% in_progress, 8% success, 8% failed, 9% no_answer (non-new rows have
  call attempts and a last call); provider set on 90% of rows (20 providers), geo on 80% (50 geo);
  5% carry `attributes`; created_at rises with id over two years (as real loads do).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql

from models import migrate
from models.db import libpq_url

ROOT = Path(__file__).resolve().parent.parent
BENCH_PGDATA = ROOT / ".numbase" / "bench-pg" / "pgdata"
BENCH_DATABASE = "numbase_bench"
SPEC = {"version": 1, "rows": 10_000_000, "projects": 200}
BLOCK = 50_000
N_PROVIDERS, N_GEO = 20, 50
BIG_PROJECT = 1  # 2,000,000 numbers


def project_sizes(total: int = SPEC["rows"]) -> list[int]:
    sizes = [2_000_000] + [500_000] * 4 + [200_000] * 15
    rest, n_small = total - sum(sizes), SPEC["projects"] - len(sizes)
    return sizes + [rest // n_small + (1 if i < rest % n_small else 0) for i in range(n_small)]


def layout() -> list[tuple[int, int, int]]:
    """(project_id, first global row number, rows) blocks in on-disk order."""
    blocks = []
    for pid, size in enumerate(project_sizes(), start=1):
        blocks += [(pid, min(BLOCK, size - off)) for off in range(0, size, BLOCK)]
    random.Random(4).shuffle(blocks)
    out, g = [], 1
    for pid, n in blocks:
        out.append((pid, g, n))
        g += n
    return out


# The phone of global row g: a permutation of 0..10^9-1 (3^18 is coprime with 10^9).
PHONE_SQL = "'+79' || lpad(((g::bigint * 387420489) % 1000000000)::text, 9, '0')"

FILL_SQL = f"""
INSERT INTO phone_numbers (id, phone_number, project_id, provider_id, geo_id, status,
                           call_attempts, last_call_at, attributes, created_at, updated_at)
SELECT g, {PHONE_SQL}, b.project_id,
       CASE WHEN g % 10 <> 0 THEN 1 + g % {N_PROVIDERS} END,
       CASE WHEN g % 5 <> 0 THEN 1 + (g / 7) % {N_GEO} END,
       s.status,
       CASE WHEN s.status = 'new' THEN 0 ELSE 1 + g % 5 END,
       CASE WHEN s.status = 'new' THEN NULL
            ELSE ts + interval '1 hour' * (1 + g % 500) END,
       CASE WHEN (g / 3) % 20 = 0 THEN jsonb_build_object('name', 'Client ' || g) END,
       ts, ts
FROM (VALUES {{blocks}}) AS b(project_id, first, n)
CROSS JOIN LATERAL generate_series(b.first, b.first + b.n - 1) AS g
CROSS JOIN LATERAL (SELECT timestamptz '2024-01-01 00:00+00'
                           + interval '63072 seconds' * g / 1000 AS ts) AS t
CROSS JOIN LATERAL (SELECT CASE
        WHEN (g * 2654435761::bigint) % 100 < 70 THEN 'new'
        WHEN (g * 2654435761::bigint) % 100 < 75 THEN 'in_progress'
        WHEN (g * 2654435761::bigint) % 100 < 83 THEN 'success'
        WHEN (g * 2654435761::bigint) % 100 < 91 THEN 'failed'
        ELSE 'no_answer' END AS status) AS s
"""


def _say(msg: str, started: float) -> None:
    print(f"  [{time.perf_counter() - started:7.1f} s] {msg}", flush=True)


def _marker(conn: psycopg.Connection) -> dict | None:
    exists = conn.execute("SELECT to_regclass('public.bench_meta')").fetchone()
    if not exists or exists[0] is None:
        return None
    row = conn.execute("SELECT value FROM bench_meta WHERE key = 'base'").fetchone()
    return row[0] if row else None


def table_ddl(conn: psycopg.Connection, table: str = "phone_numbers") -> tuple[list, list]:
    """(unique + FK constraints, plain indexes) of `table` as (name, SQL) to drop and rebuild.

    The primary key stays: ids arrive in order, so maintaining it is cheap (and FKs of other
    tables depend on it)."""
    cons = conn.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = %s::regclass AND contype IN ('u', 'f') ORDER BY contype DESC, conname",
        (table,),
    ).fetchall()
    idx = conn.execute(
        "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x "
        "JOIN pg_class i ON i.oid = x.indexrelid "
        "WHERE x.indrelid = %s::regclass "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid) "
        "ORDER BY i.relname",
        (table,),
    ).fetchall()
    return cons, idx


def drop_ddl(conn: psycopg.Connection, cons: list, idx: list, table: str = "phone_numbers") -> None:
    for name, _ in idx:
        conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
    for name, _ in cons:
        conn.execute(
            sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                sql.Identifier(table), sql.Identifier(name)
            )
        )


def create_ddl(conn: psycopg.Connection, cons: list, idx: list, table: str = "phone_numbers",
               say=None) -> None:  # fmt: skip
    # Unique first, then the FKs (each validates by one join).
    for name, definition in sorted(cons, key=lambda c: "f" in c[1][:7].lower()):
        t = time.perf_counter()
        conn.execute(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} ").format(
                sql.Identifier(table), sql.Identifier(name)
            )
            + sql.SQL(definition)  # type: ignore[arg-type]  # from pg_get_constraintdef
        )
        if say:
            say(f"constraint {name} ({time.perf_counter() - t:.1f} s)")
    for name, definition in idx:
        t = time.perf_counter()
        conn.execute(sql.SQL(definition))  # type: ignore[arg-type]  # from pg_get_indexdef
        if say:
            say(f"index {name} ({time.perf_counter() - t:.1f} s)")


def ensure_base(url: str, *, force: bool = False, upgrade: bool = True) -> None:
    """Build the base in database `url` unless it is already there (idempotent). upgrade=False:
    leave an existing base at its revision (a benchmark that migrates its own copies)."""
    url = libpq_url(url)
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        if not force and _marker(conn) == SPEC:
            if not upgrade:
                print(f"base already built in {url.rsplit('/', 1)[-1]}: skipping (as it is)")
                return
            # Built by an older schema: bring it to head (new columns are catalog-only; new
            # indexes are built once here, not in every benchmark's copy).
            t = time.perf_counter()
            migrate.upgrade(url)
            print(
                f"base already built in {url.rsplit('/', 1)[-1]}: skipping"
                f" (schema at head, {time.perf_counter() - t:.1f} s)"
            )
            return
        print(f"building the {SPEC['rows']:,}-number base in {url.rsplit('/', 1)[-1]} ...")
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    migrate.upgrade(url)
    say = lambda msg: _say(msg, started)  # noqa: E731
    say("schema migrated")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '1GB'")
        with conn.transaction():
            conn.execute(
                "INSERT INTO providers (id, code, name, type) "
                "SELECT i, 'prov' || i, 'Provider ' || i, 'lead vendor' "
                "FROM generate_series(1, %s) i",
                (N_PROVIDERS,),
            )
            conn.execute(
                "INSERT INTO geo (id, country_code, region, city, timezone) "
                "SELECT i, 'RU', 'Region ' || i, 'City ' || i, "
                "(ARRAY['Europe/Moscow','Asia/Yekaterinburg','Asia/Novosibirsk'])[1 + i %% 3] "
                "FROM generate_series(1, %s) i",
                (N_GEO,),
            )
            conn.execute(
                "INSERT INTO projects (id, code, name) "
                "SELECT i, 'bench' || i, 'Bench project ' || i FROM generate_series(1, %s) i",
                (SPEC["projects"],),
            )
            for table in ("providers", "geo", "projects"):
                conn.execute(
                    sql.SQL("SELECT setval(pg_get_serial_sequence({}, 'id'), %s)").format(
                        sql.Literal(table)
                    ),
                    (max(N_PROVIDERS, N_GEO, SPEC["projects"]),),
                )
            cons, idx = table_ddl(conn)
            drop_ddl(conn, cons, idx)
        say(f"dropped {len(cons)} constraints and {len(idx)} indexes of phone_numbers")
        blocks = ", ".join(f"({p}, {g}, {n})" for p, g, n in layout())
        conn.execute(FILL_SQL.replace("{blocks}", blocks))  # type: ignore[arg-type]
        conn.execute(
            "SELECT setval(pg_get_serial_sequence('phone_numbers', 'id'), %s)", (SPEC["rows"],)
        )
        say(f"inserted {SPEC['rows']:,} rows")
        create_ddl(conn, cons, idx, say=say)
        conn.execute("VACUUM (ANALYZE) phone_numbers")
        conn.execute("ANALYZE")
        say("vacuum analyze")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS bench_meta (key text PRIMARY KEY, value jsonb NOT NULL)"
        )
        conn.execute(
            "INSERT INTO bench_meta VALUES ('base', %s) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (json.dumps(SPEC),),
        )
        size = conn.execute(
            "SELECT pg_size_pretty(pg_total_relation_size('phone_numbers'))"
        ).fetchone()
    say(f"base ready: phone_numbers is {size[0] if size else '?'}")


@contextmanager
def bench_server(url: str | None) -> Iterator[str]:
    """A server URL (any database on it): `url` as given, else the embedded bench server,
    started for the duration and stopped afterwards if we started it."""
    if url:
        yield libpq_url(url)
        return
    from models.embedded import EmbeddedPostgres

    server = EmbeddedPostgres(BENCH_PGDATA)
    was_running = server.running()
    server_url = server.start()
    try:
        yield server_url
    finally:
        # Several benchmarks share this server: the one that started it stops it, but only
        # when nobody else is connected (else it would cut another benchmark's sessions).
        if not was_running and not _others_connected(server_url):
            server.stop()


def _others_connected(server_url: str) -> bool:
    try:
        with psycopg.connect(server_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
            ).fetchone()
    except psycopg.OperationalError:
        return False
    return bool(row and row[0])


def database_url(server_url: str, name: str) -> str:
    from models.embedded import ensure_database

    return ensure_database(server_url, name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="database URL to build in (default: embedded bench server)")
    parser.add_argument("--force", action="store_true", help="rebuild even if present")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.url:
        ensure_base(args.url, force=args.force)
    else:
        with bench_server(None) as server_url:
            ensure_base(database_url(server_url, BENCH_DATABASE), force=args.force)
    print(f"wall time {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())


def clone_database(
    server_url: str, template: str, name: str, *, wait_s: float = 300
) -> tuple[str, float]:
    """A fresh file-level copy of `template` named `name` (waits while another session holds
    the template); returns its URL and the seconds it took."""
    started = time.perf_counter()
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        while True:
            try:
                conn.execute(
                    sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
                        sql.Identifier(name), sql.Identifier(template)
                    )
                )
                break
            except psycopg.errors.ObjectInUse:
                if time.perf_counter() - started > wait_s:
                    raise
                time.sleep(2)
    url = database_url(server_url, name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
    return url, time.perf_counter() - started


def drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
