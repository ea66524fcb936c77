"""Dialing data in Dagster: the time-zone back-fill of existing numbers, and the sensor that
starts it after each registry load (models/dialing/backfill.py does the work)."""
# No `from __future__ import annotations`: Dagster reads the Config annotation at runtime.

import time

from dagster import (
    AssetExecutionContext,
    Config,
    MaterializeResult,
    RunRequest,
    SensorEvaluationContext,
    SkipReason,
    asset,
    define_asset_job,
    sensor,
)

from models.dialing import backfill
from orchestration.resources import PostgresResource


class BackfillConfig(Config):
    batch_size: int = backfill.DEFAULT_BATCH
    # 0: run to the end. Otherwise stop after this many batches; the next run resumes.
    max_batches: int = 0


@asset(
    group_name="dialing",
    description="Time zone, region and operator of every existing number, resolved in bounded "
    "resumable batches after a registry load (docs/dialing-rules.md).",
)
def timezone_backfill(
    context: AssetExecutionContext, config: BackfillConfig, postgres: PostgresResource
) -> MaterializeResult:
    started = time.perf_counter()
    seen = changed = batches = 0
    with postgres.connect("numbase-timezone-backfill", autocommit=True) as conn:
        job_id = backfill.open_backfill(conn)
        context.log.info(f"back-fill {job_id}: starting")
        finished = False
        while not config.max_batches or batches < config.max_batches:
            result = backfill.run_batch(conn, job_id, config.batch_size)
            if result.finished:
                finished = True
                break
            batches += 1
            seen += result.rows_seen
            changed += result.rows_changed
            if batches % 10 == 0:
                rate = seen / max(time.perf_counter() - started, 1e-9)
                context.log.info(
                    f"back-fill {job_id}: {seen} rows so far ({changed} changed), "
                    f"{rate:,.0f} rows/s, at id {result.last_id}"
                )
    seconds = time.perf_counter() - started
    context.log.info(f"back-fill {job_id}: {seen} rows, {changed} changed, finished={finished}")
    return MaterializeResult(
        metadata={
            "backfill_id": job_id,
            "rows_seen": seen,
            "rows_changed": changed,
            "batches": batches,
            "finished": finished,
            "seconds": round(seconds, 3),
        }
    )


timezone_backfill_job = define_asset_job(
    "timezone_backfill_job", selection=[timezone_backfill], tags={"numbase/kind": "dialing"}
)


@sensor(job=timezone_backfill_job, minimum_interval_seconds=60)
def registry_backfill_sensor(context: SensorEvaluationContext, postgres: PostgresResource):  # type: ignore[no-untyped-def]
    """Starts the back-fill when a registry load or a geo change is newer than the last finished
    back-fill, or one was left unfinished (models/dialing/backfill.py `needs_backfill`)."""
    with postgres.connect("numbase-sensor", autocommit=True) as conn:
        if not backfill.needs_backfill(conn):
            return SkipReason("time zones are up to date with the registry and geo")
        key = backfill.run_key(conn)
    return RunRequest(run_key=key)
