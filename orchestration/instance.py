"""Dagster's own storage (runs, event log, schedules/sensors) in the platform's PostgreSQL.

Everything lives in one schema, `dagster`, of the application database: Dagster keeps its own
`alembic_version` table, which must not collide with ours in `public`.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg
import yaml
from psycopg import sql

from models.db import libpq_url

DAGSTER_SCHEMA = "dagster"
RUN_MONITORING = {
    "enabled": True,
    "start_timeout_seconds": 180,
    "cancel_timeout_seconds": 120,
    "max_resume_run_attempts": 0,
    "poll_interval_seconds": 30,
    # A canceled run's pool slot (the dbt pool) is freed after this long.
    "free_slots_after_run_end_seconds": 300,
}
PYTHON_LOGS = {
    "dagster_handler_config": {
        "handlers": {
            "json": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "json",
            }
        },
        "formatters": {"json": {"()": "models.logging_setup.JsonFormatter"}},
    }
}


def storage_config(
    database_url: str, schema: str = DAGSTER_SCHEMA, *, send_search_path: bool = True
) -> dict[str, object]:
    """The `postgres_db` block dagster-postgres wants for this URL.

    Dagster keeps its tables in `schema` by sending `options=-csearch_path=...` at connect time.
    A pooler such as pgbouncer cannot pass that on: with send_search_path=False the URL must
    name a database (e.g. a pgbouncer alias with `connect_query`) whose connections already
    use the schema."""
    parts = urlsplit(libpq_url(database_url))
    if not parts.hostname or not parts.path.strip("/"):
        raise ValueError(f"database URL needs a host and a database name: {database_url}")
    params = {"application_name": "dagster"}
    if send_search_path:
        params["options"] = f"-csearch_path={schema}"
    db: dict[str, object] = {
        "username": unquote(parts.username or "postgres"),
        "hostname": parts.hostname,
        "port": parts.port or 5432,
        "db_name": parts.path.strip("/"),
        # SQLAlchemy 2.1 maps postgresql:// to psycopg 3, which breaks dagster-postgres's
        # NOTIFY (STACK-NOTES): pin the psycopg2 driver.
        "scheme": "postgresql+psycopg2",
        "params": params,
    }
    if parts.password:
        db["password"] = unquote(parts.password)
    return db


def ensure_schema(database_url: str, schema: str = DAGSTER_SCHEMA) -> None:
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))


def write_dagster_yaml(dagster_home: Path, database_url: str) -> Path:
    """Write `<dagster_home>/dagster.yaml` pointing every storage at PostgreSQL; return its path."""
    ensure_schema(database_url)
    dagster_home.mkdir(parents=True, exist_ok=True)
    config = {
        "storage": {"postgres": {"postgres_db": storage_config(database_url)}},
        # Two cores are shared by the API, PostgreSQL and the runs: keep runs few.
        # Ops in a pool (the dbt op's "numbase_dbt") run one at a time, so the schedule, the
        # post-import refresh and user requests never run dbt concurrently.
        "concurrency": {"runs": {"max_concurrent_runs": 2}, "pools": {"default_limit": 1}},
        # Runs stuck STARTING or CANCELING (a dead code server) are failed/canceled by the
        # daemon; resuming is not possible with the default launcher (max_resume_run_attempts 0).
        "run_monitoring": RUN_MONITORING,
        # numbase retries imports itself (sensors/reconcile.py): bounded, with backoff, for
        # transient causes only; Dagster's run retries would run them twice.
        "run_retries": {"enabled": False},
        "telemetry": {"enabled": False},
        # Run logs also as JSON lines on stderr (run_id, job, step), like the API's access log.
        "python_logs": PYTHON_LOGS,
    }
    path = dagster_home / "dagster.yaml"
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(
        "# Written by numbase (orchestration/instance.py); edits are overwritten by `numbase up`.\n"
        + yaml.safe_dump(config, sort_keys=False)
    )
    tmp.chmod(0o600)  # it may hold the database password
    tmp.replace(path)
    return path


if __name__ == "__main__":
    # `python -m orchestration.instance`: create Dagster's schema (docker compose's migrate step).
    from models.db import resolve_database_url

    ensure_schema(resolve_database_url())
    print(f"schema {DAGSTER_SCHEMA!r} ready")
