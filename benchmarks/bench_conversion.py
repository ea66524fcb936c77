"""Conversion refresh over the 10,000,000-number base: every dbt model and test, and one project.

    .venv/bin/python -m benchmarks.bench_conversion [--url SERVER_URL] [--runs K] [--no-dagster]

What runs, on a file-level copy of the base (`CREATE DATABASE ... TEMPLATE numbase_bench`, so the
base is never modified and other benchmarks keep their template), dropped at the end:

1. full    - `dbt build`: all 14 models (the project snapshot appended for 200 projects, the
             provider/geo marts, the daily call outcomes) and all their data tests;
2. models  - `dbt run` of the same models without the tests;
3. project - one project's refresh: `dbt build --select fct_project_conversion
             fct_project_conversion_current --vars '{project_id: N}'` for the 2,000,000-number
             project and for a ~16,667-number one;
4. dagster - the full refresh as Dagster runs it (`conversion_refresh_job` in process: events,
             asset checks), once.

For each dbt command: the wall time of the process, the time dbt spent executing nodes
(run_results.json `elapsed_time`), and the rest, which is dbt's own start-up (imports, parse,
adapter, connections). A warm-up `dbt parse` first, so runs use partial parsing as Dagster runs do.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from benchmarks.base import (
    BENCH_DATABASE,
    BIG_PROJECT,
    bench_server,
    clone_database,
    database_url,
    drop_database,
    ensure_base,
)
from orchestration.dbt_env import DBT_EXECUTABLE, DBT_PROJECT_DIR, dbt_env

RUN_DATABASE = "numbase_bench_conversion"
SMALL_PROJECT = 200  # ~16,667 numbers


class Dbt:
    def __init__(self, url: str, target: Path) -> None:
        self.target = target
        self.env = {
            **os.environ,
            **dbt_env(url),
            "DBT_PROFILES_DIR": str(DBT_PROJECT_DIR),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        }

    def __call__(self, *args: str) -> dict[str, float]:
        started = time.perf_counter()
        out = subprocess.run(
            [str(DBT_EXECUTABLE), *args, "--project-dir", str(DBT_PROJECT_DIR),
             "--target-path", str(self.target), "--log-path", str(self.target)],
            env=self.env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        wall = time.perf_counter() - started
        if out.returncode != 0:
            raise SystemExit(f"dbt {' '.join(args)} failed:\n{out.stdout[-3000:]}")
        results = self.target / "run_results.json"
        nodes = json.loads(results.read_text())["elapsed_time"] if args[0] != "parse" else 0.0
        return {"wall": wall, "nodes": nodes, "startup": wall - nodes}

    def slowest(self, n: int = 5) -> list[tuple[str, float]]:
        results = json.loads((self.target / "run_results.json").read_text())["results"]
        timed = [(r["unique_id"].split(".")[-1], r["execution_time"]) for r in results]
        return sorted(timed, key=lambda t: -t[1])[:n]


def median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def row(name: str, runs: list[dict[str, float]]) -> str:
    m = median(runs)
    walls = ", ".join(f"{r['wall']:.1f}" for r in runs)
    share = 100 * m["startup"] / m["wall"]
    return (
        f"| {name} | **{m['wall']:.1f} s** ({walls}) | {m['nodes']:.1f} s | "
        f"{m['startup']:.1f} s ({share:.0f}%) |"
    )


def dagster_full_refresh(url: str) -> float:
    from dagster import DagsterInstance, Definitions

    from orchestration.assets.dbt import REFRESH_JOB_NAME, conversion_definitions
    from orchestration.resources import PostgresResource

    defs = Definitions.merge(
        conversion_definitions(),
        Definitions(resources={"postgres": PostgresResource(database_url=url)}),
    )
    job = defs.resolve_job_def(REFRESH_JOB_NAME)
    started = time.perf_counter()
    with DagsterInstance.ephemeral() as instance:
        result = job.execute_in_process(instance=instance)
    assert result.success
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="server URL (default: the embedded bench server)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-dagster", action="store_true")
    args = parser.parse_args(argv)
    with bench_server(args.url) as server_url:
        base = database_url(server_url, BENCH_DATABASE)
        ensure_base(base)
        _, copied = clone_database(server_url, BENCH_DATABASE, RUN_DATABASE)
        url = server_url.rpartition("/")[0] + "/" + RUN_DATABASE
        print(f"base copied in {copied:.1f} s", file=sys.stderr)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                dbt = Dbt(url, Path(tmp))
                parse = dbt("parse")
                print(f"warm-up parse (full): {parse['wall']:.1f} s", file=sys.stderr)
                full = [dbt("build") for _ in range(args.runs)]
                slow = dbt.slowest()
                models = [dbt("run") for _ in range(args.runs)]
                one = ["--select", "fct_project_conversion fct_project_conversion_current"]
                big = [dbt("build", *one, "--vars", f"{{project_id: {BIG_PROJECT}}}")
                       for _ in range(args.runs)]  # fmt: skip
                small = [dbt("build", *one, "--vars", f"{{project_id: {SMALL_PROJECT}}}")
                         for _ in range(args.runs)]  # fmt: skip
            dagster_wall = None if args.no_dagster else dagster_full_refresh(url)
            with psycopg.connect(url) as conn:
                snaps = conn.execute(
                    "SELECT count(DISTINCT calculated_at), count(*) FROM project_conversions"
                ).fetchone()
        finally:
            drop_database(server_url, RUN_DATABASE)
    print("| command | wall (median; runs) | dbt nodes | dbt start-up (share) |")
    print("|---|---|---|---|")
    print(row("`dbt build` - all 14 models + all data tests", full))
    print(row("`dbt run` - all 14 models, no tests", models))
    print(row(f"one project's refresh, project {BIG_PROJECT} (2,000,000 numbers)", big))
    print(row(f"one project's refresh, project {SMALL_PROJECT} (~16,667 numbers)", small))
    if dagster_wall is not None:
        name = "Dagster `conversion_refresh_job` (in process, with asset checks)"
        print(f"| {name} | **{dagster_wall:.1f} s** | | |")
    print()
    print("slowest nodes of the last full build: " + ", ".join(f"{n} {t:.2f} s" for n, t in slow))
    print(f"snapshots written: {snaps[1]} rows over {snaps[0]} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
