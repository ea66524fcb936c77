"""numbase through a real pgbouncer in transaction-pooling mode (the plan's connection pooler).

Skipped, with the reason, where Debian's `pgbouncer` binary is absent (`.ci/run` installs it).
First what transaction pooling changes, shown on the wire; then a slice of the suite itself -
the bulk loader's COPY, the numbers API, auth, the SoftPhone webhook, a real Dagster SFTP import
and a real dbt build - run in a child pytest whose every database connection goes through
pgbouncer (`NUMBASE_TEST_DATABASE_URL` pointing at it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from models.pgbouncer import LocalPgBouncer, find_binary

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    find_binary() is None,
    reason="pgbouncer is not installed (apt-get install pgbouncer; .ci/run does)",
)

# What the slice covers and why: every way numbase reaches PostgreSQL.
SLICE = [
    "tests/integration/test_bulk.py",  # COPY into a TEMP ... ON COMMIT DROP staging table
    "tests/api/test_numbers.py",  # ORM sessions, keyset pages, counts, streaming export
    "tests/api/test_auth.py",  # tokens, revocation, throttling rows
    "tests/api/test_softphone_webhook.py",  # the webhook's group-commit transactions
    "tests/dagster/test_sftp_import.py",  # the import asset: real SFTP, real Dagster runs
    "tests/dbt/test_metrics.py",  # dbt's own connections
]
# Left out: a test that sets lock_timeout for its own connection with a session-level SET (the
# very thing transaction pooling cannot keep: its load then ran on another server connection
# and waited for ever); the tests of per-process lock/statement limits, which a pooled
# deployment takes from the pooler's connect_query instead (NUMBASE_DB_POOLED, shown below);
# and the loader's memory test (30 s, nothing to do with pooling).
SLICE_EXCLUDE = "not database_error_in_the_insert and not timeout and not memory_stays_flat"


@pytest.fixture(scope="module")
def pgbouncer(server_url: str) -> Iterator[LocalPgBouncer]:
    # Session defaults as the shipped config sets them: nothing through it waits for ever.
    bouncer = LocalPgBouncer(server_url, connect_query="SET lock_timeout = 10000")
    bouncer.start()
    yield bouncer
    bouncer.stop()


def _pooled(bouncer: LocalPgBouncer, database_url: str, **kwargs: object) -> psycopg.Connection:
    return psycopg.connect(
        bouncer.url(database_url.rsplit("/", 1)[1]), prepare_threshold=None, **kwargs
    )


def test_numbase_patterns_hold_under_transaction_pooling(
    pgbouncer: LocalPgBouncer, database_url: str
) -> None:
    """SET LOCAL and ON COMMIT DROP temp tables live inside one transaction: safe. Many clients
    share few server connections."""
    conns = [_pooled(pgbouncer, database_url) for _ in range(40)]
    try:
        for conn in conns:
            with conn.transaction():
                conn.execute("SET LOCAL work_mem = '64MB'")
                conn.execute("CREATE TEMP TABLE staging (x int) ON COMMIT DROP")
                with conn.cursor().copy("COPY staging (x) FROM STDIN") as copy:
                    for i in range(100):
                        copy.write_row((i,))
                total = conn.execute("SELECT sum(x) FROM staging").fetchone()
                assert total == (4950,)
                assert conn.execute("SHOW work_mem").fetchone() == ("64MB",)
            # The setting ended with the transaction, whichever server connection it used.
            assert conn.execute("SHOW work_mem").fetchone() != ("64MB",)
            conn.rollback()
    finally:
        for conn in conns:
            conn.close()


def test_server_side_prepares_break_and_numbase_never_uses_them(
    server_url: str, database_url: str
) -> None:
    """psycopg prepares a statement after 5 runs, under names (`_pg3_0`, ...) that are unique
    per client connection only. Through transaction pooling two clients share a server
    connection, so the second prepare collides. Behind a pooler every numbase connection passes
    prepare_threshold=None (models/db.py with prepares=False, orchestration/resources.py), and
    the hot paths' explicit prepares (models/prepared.py) then run plainly."""
    from sqlalchemy import Integer, bindparam, select

    from models.db import make_engine
    from models.prepared import execute_prepared

    db = database_url.rsplit("/", 1)[1]
    with LocalPgBouncer(server_url, default_pool_size=1) as one_server_conn:
        url = one_server_conn.url(db)
        a = psycopg.connect(url, prepare_threshold=0, autocommit=True)
        b = psycopg.connect(url, prepare_threshold=0, autocommit=True)
        try:
            a.execute("SELECT %s::int", (1,)).fetchone()
            with pytest.raises(psycopg.errors.DuplicatePreparedStatement):
                b.execute("SELECT %s::text", ("x",)).fetchone()
        finally:
            a.close()
            b.close()

        engine = make_engine(url, pool_size=2, prepares=False)
        stmt = select(bindparam("i", type_=Integer))
        try:
            for _ in range(3):
                with engine.connect() as conn:
                    assert conn.connection.driver_connection.prepare_threshold is None
                    for i in range(10):  # far past psycopg's default threshold of 5
                        assert conn.exec_driver_sql("SELECT %(i)s::int", {"i": i}).scalar() == i
                        assert execute_prepared(conn, stmt, {"i": i})[0][0] == i
        finally:
            engine.dispose()


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_suite_slice_through_pgbouncer(pgbouncer: LocalPgBouncer, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "NUMBASE_TEST_DATABASE_URL": pgbouncer.url("postgres"),
        "NUMBASE_DATA_DIR": str(tmp_path / "data"),
        "NUMBASE_DB_POOLED": "true",
    }
    env.pop("NUMBASE_DATABASE_URL", None)  # set by this session's database fixture
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-k",
            SLICE_EXCLUDE,
            *SLICE,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1400,
    )
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
    assert proc.returncode == 0, f"the slice failed through pgbouncer:\n{tail}"
    log = (pgbouncer.log_path).read_text()
    assert "login attempt" in log  # the child really connected through pgbouncer


def test_dagster_storage_through_pgbouncer_keeps_its_schema(
    server_url: str, database_url: str
) -> None:
    """Dagster sends its search_path as the `options` startup parameter, which pgbouncer
    refuses; through a database alias whose connect_query sets it, runs, events and sensor
    state work and every Dagster table lands in schema `dagster`, none in `public`."""
    from dagster import instance_for_test, job, op

    from orchestration.instance import DAGSTER_SCHEMA, ensure_schema, storage_config

    db = database_url.rsplit("/", 1)[1]
    alias = f"{db}_dagster"
    ensure_schema(database_url)
    with LocalPgBouncer(
        server_url, aliases={alias: (db, f"SET search_path = {DAGSTER_SCHEMA}")}
    ) as bouncer:
        with pytest.raises(psycopg.OperationalError, match="unsupported startup parameter"):
            psycopg.connect(bouncer.url(db), options="-csearch_path=dagster").close()

        @op
        def hello() -> int:
            return 1

        @job
        def pooled_job() -> None:
            hello()

        config = storage_config(bouncer.url(alias), send_search_path=False)
        with instance_for_test(
            overrides={"storage": {"postgres": {"postgres_db": config}}}
        ) as inst:
            result = pooled_job.execute_in_process(instance=inst)
            assert result.success
            assert inst.get_run_by_id(result.run_id) is not None
            assert len(inst.all_logs(result.run_id)) > 3

    with psycopg.connect(database_url) as conn:
        schemas = {
            r[0]
            for r in conn.execute(
                "SELECT table_schema FROM information_schema.tables WHERE table_name = 'runs'"
            )
        }
        in_public = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
            " AND table_name IN ('runs', 'event_logs', 'instigators')"
        ).fetchone()
    assert schemas == {DAGSTER_SCHEMA}
    assert in_public == (0,)


def test_pooled_processes_send_no_options_and_take_the_poolers_limits(
    pgbouncer: LocalPgBouncer, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Direct, the timeouts travel as `options` (no round trip per transaction); pgbouncer
    refuses that parameter, so with NUMBASE_DB_POOLED the same code sends none and runs under
    the pooler's connect_query defaults."""
    from models.db import connect, db_timeouts
    from models.settings import load_settings

    url = pgbouncer.url(database_url.rsplit("/", 1)[1])
    direct = db_timeouts(load_settings())
    with pytest.raises(psycopg.OperationalError, match="unsupported startup parameter"):
        connect(url, application_name="t", timeouts=direct).close()
    monkeypatch.setenv("NUMBASE_DB_POOLED", "true")
    pooled = db_timeouts(load_settings())
    with connect(url, application_name="t", timeouts=pooled) as conn:
        assert conn.execute("SHOW lock_timeout").fetchone() == ("10s",)


def test_a_run_liveness_lock_needs_the_session_alias(server_url: str, database_url: str) -> None:
    """An import run holds a session-level advisory lock for as long as its process lives
    (models/job_recovery.py). Through transaction pooling the lock stays with a pooled server
    connection after its process is gone - the run would look alive for ever; through a
    session-pooled alias (NUMBASE_DB_SESSION_URL) it ends with its client."""
    from models import job_recovery

    db = database_url.rsplit("/", 1)[1]
    aliases = {f"{db}_session": (db, "SET lock_timeout = 10000", "session")}
    with (
        LocalPgBouncer(server_url, aliases=aliases) as bouncer,
        psycopg.connect(database_url, autocommit=True) as watcher,
    ):
        holder = _pooled(bouncer, database_url, autocommit=True)
        assert job_recovery.hold_run_lock(holder, "run-pooled")
        holder.close()  # the process "dies"
        assert job_recovery.run_alive(watcher, "run-pooled")  # stuck with the server conn

        holder = psycopg.connect(bouncer.url(f"{db}_session"), autocommit=True)
        assert job_recovery.hold_run_lock(holder, "run-session")
        assert job_recovery.run_alive(watcher, "run-session")
        holder.close()
        deadline = time.monotonic() + 10
        while job_recovery.run_alive(watcher, "run-session"):
            assert time.monotonic() < deadline, "the lock outlived its client"
            time.sleep(0.05)
