"""dbt against the session's test database: run the real dbt CLI with the profile's variables
derived from the test database URL, its artifacts in a temporary folder."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from orchestration.dbt_env import DBT_EXECUTABLE, DBT_PROJECT_DIR, dbt_env
from tests.dagster.conftest import (  # noqa: F401  (the SFTP/Dagster fixtures, reused here)
    dagster_instance,
    harness,
    postgres_resource,
    sftp_resource,
    sftp_server,
)


def run_dbt(database_url: str, target: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # Start from the project's partial-parse state, as dagster-dbt does (a full parse costs
    # about 1.4 s more; the state is reused only if it was made for the same database).
    state = DBT_PROJECT_DIR / "target" / "partial_parse.msgpack"
    if state.exists() and not (target / state.name).exists():
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(state, target / state.name)
    env = {
        **os.environ,
        **dbt_env(database_url),
        "DBT_PROFILES_DIR": str(DBT_PROJECT_DIR),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    return subprocess.run(
        [
            str(DBT_EXECUTABLE),
            *args,
            "--project-dir",
            str(DBT_PROJECT_DIR),
            "--target-path",
            str(target),
            "--log-path",
            str(target),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
