"""The numbering-plan registry drop folder: `inbox/_registry/`. The files in it together are
the new registry (all extracts: ABC-3xx, ABC-4xx, ABC-8xx, DEF-9xx), so one run loads them all,
once every file has settled (same size and mtime across two ticks, no temporary names). The
run key is the set of (path, size, mtime): the same drop is never loaded twice."""

from __future__ import annotations

import hashlib
import json

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from models.sftp_layout import INBOX, is_registry_path
from sensors.inbox_files import list_inbox

REGISTRY_JOB = "registry_load_job"
REGISTRY_OP = "numbering_plan_registry"


@sensor(
    name="registry_inbox_sensor",
    job_name=REGISTRY_JOB,
    minimum_interval_seconds=30,
    required_resource_keys={"sftp"},
    default_status=DefaultSensorStatus.RUNNING,
    description="Loads the numbering-plan registry from the files in inbox/_registry/.",
)
def registry_inbox_sensor(context: SensorEvaluationContext) -> SensorResult | SkipReason:
    previous = json.loads(context.cursor) if context.cursor else {}
    with context.resources.sftp.session() as sftp:
        if not sftp.is_dir(INBOX):
            return SkipReason(f"the SFTP server has no {INBOX}/ folder")
        files = sorted(
            (f.path, f.size, f.mtime) for f in list_inbox(sftp)[0] if is_registry_path(f.path)
        )
    seen = {"files": [list(f) for f in files]}
    if not files:
        return SensorResult(cursor=json.dumps({}), skip_reason="no registry files")
    if previous != seen:  # something new or still changing: wait for the next tick
        return SensorResult(cursor=json.dumps(seen), skip_reason="registry files settling")
    digest = hashlib.sha256(json.dumps(files).encode()).hexdigest()[:16]
    paths = [f[0] for f in files]
    return SensorResult(
        run_requests=[
            RunRequest(
                run_key=f"registry:{digest}",
                run_config={"ops": {REGISTRY_OP: {"config": {"paths": paths}}}},
            )
        ],
        cursor=json.dumps(seen),
    )
