"""The dbt project's location and the environment its profile reads.

dbt_project/profiles.yml takes host/port/user/password/dbname from `NUMBASE_DB_*` variables; they
are derived here from `models.db.resolve_database_url()`, because the embedded PostgreSQL's port is
only known at run time. Kept free of Dagster imports so scripts and benchmarks stay light.

By hand: `.venv/bin/python -m orchestration.dbt_env build` runs `dbt build` on the configured
database (any dbt command and flags work: `docs generate`, `run --select fct_geo_conversion`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict

DBT_PROJECT_DIR = Path(__file__).resolve().parent.parent / "dbt_project"
DBT_EXECUTABLE = Path(sys.executable).with_name("dbt")

# The variables profiles.yml reads (DBT_ENV_SECRET_ values are scrubbed from dbt's logs).
_KEYS = {
    "host": "NUMBASE_DB_HOST",
    "port": "NUMBASE_DB_PORT",
    "user": "NUMBASE_DB_USER",
    "password": "DBT_ENV_SECRET_NUMBASE_DB_PASSWORD",
    "dbname": "NUMBASE_DB_NAME",
    "sslmode": "NUMBASE_DB_SSLMODE",
}


def dbt_env(url: str) -> dict[str, str]:
    """The profile's variables for a postgresql:// URL (percent-encoding and ?sslmode= handled)."""
    if not url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        raise ValueError(f"not a PostgreSQL URL: {url.split('@')[-1]}")
    params = conninfo_to_dict(url.replace("postgresql+psycopg://", "postgresql://", 1))
    missing = [k for k in ("host", "dbname") if not params.get(k)]
    if missing:
        raise ValueError(f"database URL lacks {', '.join(missing)}: {url.split('@')[-1]}")
    env = {
        "NUMBASE_DB_PORT": "5432",
        "NUMBASE_DB_USER": os.environ.get("USER", "postgres"),
        "DBT_ENV_SECRET_NUMBASE_DB_PASSWORD": "",
        "NUMBASE_DB_SSLMODE": "prefer",
    }
    for key, var in _KEYS.items():
        if params.get(key) not in (None, ""):
            env[var] = str(params[key])
    return env


def resolved_dbt_env() -> dict[str, str]:
    """The profile's variables for the configured database (starts the embedded one if needed)."""
    from models.db import resolve_database_url

    return dbt_env(resolve_database_url())


@contextmanager
def dbt_environment(env: Mapping[str, str]) -> Iterator[None]:
    """Set the profile's variables for the dbt subprocesses started inside the block.

    dagster-dbt copies os.environ when it starts dbt and offers no per-call env, so the values
    are set here and restored afterwards.
    """
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        raise SystemExit("usage: python -m orchestration.dbt_env <dbt command> [flags]")
    env = {**os.environ, **resolved_dbt_env(), "DBT_PROFILES_DIR": str(DBT_PROJECT_DIR)}
    env.setdefault("DBT_PROJECT_DIR", str(DBT_PROJECT_DIR))
    os.execve(DBT_EXECUTABLE, [str(DBT_EXECUTABLE), *args], env)


if __name__ == "__main__":
    main()
