"""Daily housekeeping: expired revoked tokens and stale login failures (`numbase prune` does the
same by hand)."""

import datetime as dt

from dagster import DefaultScheduleStatus, OpExecutionContext, ScheduleDefinition, job, op

from models.db import make_engine
from models.maintenance import prune_auth_tables
from models.settings import load_settings
from orchestration.resources import PostgresResource


@op(description="Delete revoked tokens past their expiry and login failures outside the window.")
def prune_auth_tables_op(context: OpExecutionContext, postgres: PostgresResource) -> dict[str, int]:
    window = dt.timedelta(seconds=load_settings().login_window_seconds)
    engine = make_engine(postgres.url(), pool_size=None)
    try:
        with engine.begin() as conn:
            removed = prune_auth_tables(conn, failures_older_than=window)
    finally:
        engine.dispose()
    context.log.info(f"pruned {removed}")
    context.add_output_metadata({f"{table}_removed": n for table, n in removed.items()})
    return removed


@job(description="Auth-table housekeeping", tags={"numbase/kind": "maintenance"})
def auth_housekeeping_job() -> None:
    prune_auth_tables_op()


# Running from the first start of the daemon, like the conversion refresh: operators read "runs
# daily" in docs/operations.md and should not have to find a switch in the Dagster UI.
auth_housekeeping_schedule = ScheduleDefinition(
    job=auth_housekeeping_job,
    cron_schedule="17 3 * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
)
