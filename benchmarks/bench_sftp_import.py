"""SFTP import end to end vs raw COPY of the same file, in one run.

    .venv/bin/python benchmarks/bench_sftp_import.py [--rows 10000000] [--keep]

1. Generates a CSV of distinct E.164 numbers (shuffled, so the unique index is hit at random).
2. Pipeline: upload to the local SFTP server's inbox (paramiko, .part + rename), two inbox-sensor
   ticks, the Dagster import run in-process (download with prefetch, parse, bulk loader, commit,
   archive) - timed from the start of the upload to the commit.
3. Raw: `COPY tbl (phone_number) FROM STDIN` of the same local file through psycopg into an
   identical table (`LIKE phone_numbers INCLUDING ALL`: same indexes and constraints).
Prints both, the ratio raw/pipeline (aim >= 0.7) and this process's peak RSS (aim < 1 GiB;
the SFTP server runs in this process too). Uses a throwaway database on the configured server
(NUMBASE_DATABASE_URL or the embedded one).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def generate(
    path: Path, rows: int, *, prefix: str = "+79", digits: int = 9, first: int = 0
) -> None:
    """Rows first..first+rows-1 of `prefix` + a `digits`-digit permutation of the row number.

    n -> n*7919 mod 10^d is a bijection (7919 is coprime with 10): distinct, scattered numbers;
    files of disjoint row ranges (first) share no number."""
    mod = 10**digits
    with path.open("w", buffering=1 << 20) as fh:
        fh.write("phone\n")
        step = 100_000
        for lo in range(first, first + rows, step):
            fh.write(
                "".join(f"{prefix}{(n * 7919 + 12345) % mod:0{digits}d}\n"
                        for n in range(lo, min(lo + step, first + rows)))
            )  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()

    from dagster import RunRequest, build_sensor_context, instance_for_test
    from dagster._core.definitions.partitions.context import partition_loading_context

    from models import migrate, sftp_jobs
    from models.db import resolve_database_url
    from models.settings import load_settings
    from orchestration.definitions import build_definitions
    from orchestration.local_sftp import LocalSFTPServer
    from orchestration.resources import PostgresResource, SFTPResource
    from sensors.inbox import sftp_inbox_sensor

    settings = load_settings()
    embedded = None
    if settings.embedded_database:
        from models.embedded import EmbeddedPostgres

        embedded = EmbeddedPostgres(settings.pgdata_dir)
        embedded = None if embedded.running() else embedded  # stop it only if we start it
    server_url = resolve_database_url(settings)
    name = f"numbase_bench_sftp_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = server_url.rsplit("/", 1)[0] + "/" + name
    work = Path(tempfile.mkdtemp(prefix="numbase-bench-sftp-"))
    try:
        migrate.upgrade(url)
        with psycopg.connect(url, autocommit=True) as conn:
            project_id = conn.execute(
                "INSERT INTO projects (code, name) VALUES ('bench', 'Bench') RETURNING id"
            ).fetchone()[0]
            conn.execute("CREATE TABLE raw_copy (LIKE phone_numbers INCLUDING ALL)")
            conn.execute(f"ALTER TABLE raw_copy ALTER project_id SET DEFAULT {int(project_id)}")

        csv_path = work / "numbers.csv"
        t = time.perf_counter()
        generate(csv_path, args.rows)
        size_mib = csv_path.stat().st_size / 2**20
        print(
            f"generated {args.rows:,} rows ({size_mib:.0f} MiB) in {time.perf_counter() - t:.1f}s"
        )

        server = LocalSFTPServer(work / "sftp", work / "data", password="bench-password")
        server.start()
        sftp = SFTPResource(port=server.port, password=server.password,
                            known_hosts=str(work / "known_hosts"))  # fmt: skip
        resources = {"sftp": sftp, "postgres": PostgresResource(database_url=url)}
        defs = build_definitions(resources)
        with instance_for_test() as instance:
            t0 = time.perf_counter()
            with sftp.session() as s:
                s.upload(csv_path, "inbox/bench/numbers.csv")
            upload_s = time.perf_counter() - t0
            requests: list[RunRequest] = []
            cursor = None
            # The settle time is a deliberate wait, not pipeline cost: two ticks are enough here.
            os.environ["NUMBASE_SFTP_SETTLE_SECONDS"] = "0"
            t1 = time.perf_counter()
            for _ in range(3):
                with (
                    build_sensor_context(
                        instance=instance,
                        instance_ref=instance.get_ref(),
                        cursor=cursor,
                        resources=resources,
                        definitions=defs,
                    ) as ctx,  # fmt: skip
                    partition_loading_context(dynamic_partitions_store=instance),
                ):
                    out = sftp_inbox_sensor.evaluate_tick(ctx)
                cursor = out.cursor
                if out.run_requests:
                    requests = list(out.run_requests)
                    break
            [request] = requests
            instance.add_dynamic_partitions(sftp_jobs.INBOX_PARTITIONS, [request.partition_key])
            result = defs.resolve_job_def(sftp_jobs.IMPORT_JOB).execute_in_process(
                run_config=request.run_config, partition_key=request.partition_key,
                tags=dict(request.tags), instance=instance,
            )  # fmt: skip
            pipeline_s = time.perf_counter() - t1
            meta = {
                k: v.value
                for k, v in result.asset_materializations_for_node("phone_numbers")[
                    0
                ].metadata.items()
            }
        server.stop()
        rss_pipeline = peak_rss_mib()

        t2 = time.perf_counter()
        with psycopg.connect(url) as conn, conn.cursor() as cur, csv_path.open("rb") as fh:
            with cur.copy(
                "COPY raw_copy (phone_number) FROM STDIN WITH (FORMAT csv, HEADER)"
            ) as cp:
                while block := fh.read(4 << 20):
                    cp.write(block)
            conn.commit()
        raw_s = time.perf_counter() - t2
        with psycopg.connect(url) as conn:
            loaded = conn.execute(
                "SELECT count(*) FROM phone_numbers WHERE project_id = %s", (project_id,)
            ).fetchone()[0]
            raw_rows = conn.execute("SELECT count(*) FROM raw_copy").fetchone()[0]
        assert loaded == raw_rows == args.rows, (loaded, raw_rows)

        total = upload_s + pipeline_s
        print(f"SFTP upload            {upload_s:8.1f} s  ({size_mib / upload_s:.0f} MiB/s)")
        mib = meta["bytes"] / 2**20
        print(
            f"sensor -> committed    {pipeline_s:8.1f} s  (download {mib:.0f} MiB,"
            f" loader {meta['load_seconds']:.1f} s)"
        )
        print(f"pipeline end to end    {total:8.1f} s  {args.rows / total:10,.0f} rows/s")
        print(f"raw COPY same file     {raw_s:8.1f} s  {args.rows / raw_s:10,.0f} rows/s")
        print(f"ratio raw/pipeline     {raw_s / total:8.2f}    (aim >= 0.7)")
        print(f"ratio excl. upload     {raw_s / pipeline_s:8.2f}")
        print(f"peak RSS (pipeline)    {rss_pipeline:8.0f} MiB (aim < 1024; whole process)")
        return 0
    finally:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
        if not args.keep:
            with psycopg.connect(server_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if embedded is not None:
            embedded.stop()


if __name__ == "__main__":
    sys.exit(main())
