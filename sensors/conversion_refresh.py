"""Refresh the conversion models after numbers are imported.

One run per burst of imports: each tick compares the import asset's latest materialization
(event storage id) with the cursor and, if it moved, asks for one refresh run keyed by that id.
Imports that finish while a refresh runs are picked up by the next tick. The targets are passed
in (an asset key and a job), so this module imports no orchestration code.
"""

from __future__ import annotations

from dagster import (
    AssetKey,
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from sensors.conversion_requests import Job

RUN_KEY_PREFIX = "conversion_after_import"


def latest_materialization_id(context: SensorEvaluationContext, key: AssetKey) -> int | None:
    """Storage id of the asset's newest materialization, any partition."""
    result = context.instance.fetch_materializations(key, limit=1, ascending=False)
    return result.records[0].storage_id if result.records else None


def build_refresh_after_import_sensor(
    upstream_key: AssetKey, job: Job, *, minimum_interval_seconds: int = 30
) -> SensorDefinition:
    @sensor(
        name="conversion_after_import_sensor",
        job=job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description=f"Refreshes conversion after {upstream_key.to_user_string()} materializes.",
    )
    def conversion_after_import_sensor(context: SensorEvaluationContext) -> SensorResult:
        latest = latest_materialization_id(context, upstream_key)
        seen = int(context.cursor) if context.cursor else None
        if latest is None or (seen is not None and latest <= seen):
            return SensorResult(skip_reason=SkipReason("no import since the last refresh"))
        return SensorResult(
            run_requests=[
                RunRequest(
                    run_key=f"{RUN_KEY_PREFIX}:{latest}",
                    tags={"numbase/trigger": "import", "numbase/import_event": str(latest)},
                )
            ],
            cursor=str(latest),
        )

    return conversion_after_import_sensor
