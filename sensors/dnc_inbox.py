"""The do-not-call drop folders: stable files in `inbox/_dnc/` (the global list) and
`inbox/<project code>/_dnc/` (that project's list) become runs of the `dnc_list_file` asset,
one dynamic partition per file (key = its path), like number imports (sensors/inbox.py:
settle across two ticks, temporary names skipped, run key path:size:mtime). A file in a
project folder whose project does not exist is moved to rejected/ with a `.error.txt`."""

from __future__ import annotations

import json
import time

from dagster import (
    AddDynamicPartitionsRequest,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from models.settings import load_settings
from models.sftp_access import live_project
from models.sftp_layout import DNC_FOLDER, INBOX, arrival_label, is_dnc_path, reject_file
from sensors.inbox_files import InboxFile, list_inbox, plan_tick

DNC_JOB = "dnc_import_job"
DNC_PARTITIONS = "dnc_files"
DNC_OP = "dnc_list_file"


def dnc_scope(path: str) -> str | None:
    """inbox/_dnc/<file> -> None (global); inbox/<project>/_dnc/<file> -> the project code."""
    parts = path.split("/")
    if len(parts) == 3 and parts[1] == DNC_FOLDER:
        return None
    if len(parts) == 4 and parts[2] == DNC_FOLDER and parts[1] != DNC_FOLDER:
        return parts[1]
    raise ValueError(
        f"do-not-call files go into {INBOX}/{DNC_FOLDER}/<file> or "
        f"{INBOX}/<project code>/{DNC_FOLDER}/<file>, not {path}"
    )


def dnc_run_request(f: InboxFile) -> RunRequest:
    return RunRequest(
        run_key=f"dnc:{f.path}:{f.size}:{f.mtime}",
        partition_key=f.path,
        run_config={"ops": {DNC_OP: {"config": {"size": f.size, "mtime": f.mtime}}}},
    )


@sensor(
    name="dnc_inbox_sensor",
    job_name=DNC_JOB,
    minimum_interval_seconds=10,
    required_resource_keys={"sftp", "postgres"},
    default_status=DefaultSensorStatus.RUNNING,
    description="Loads do-not-call files dropped in inbox/_dnc/ and inbox/<project>/_dnc/.",
)
def dnc_inbox_sensor(context: SensorEvaluationContext) -> SensorResult | SkipReason:
    cursor = json.loads(context.cursor) if context.cursor else {}
    requests: list[RunRequest] = []
    with context.resources.sftp.session() as sftp:
        if not sftp.is_dir(INBOX):
            return SkipReason(f"the SFTP server has no {INBOX}/ folder")
        files, markers = list_inbox(sftp)
        files = [f for f in files if is_dnc_path(f.path)]
        # The number inbox's rule (sensors/inbox_files.py): a done-marker, or unchanged for the
        # settle time over two ticks.
        settle = load_settings().sftp_settle_seconds
        ready_now, _lingering, new_cursor = plan_tick(cursor, files, markers, time.time(), settle)
        for f, _marked, _since in ready_now:
            new_cursor["requested"][f.path] = f.key
            problem = _problem(context, f)
            if problem is not None:
                reject_file(sftp, f.path, f"{f.path}: {problem}", arrival_label())
                context.log.warning(f"rejected {f.path}: {problem}")
                continue
            requests.append(dnc_run_request(f))
    return SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=(
            [AddDynamicPartitionsRequest(DNC_PARTITIONS, [r.partition_key for r in requests])]
            if requests
            else []
        ),
        cursor=json.dumps(new_cursor, sort_keys=True),
        skip_reason=None if requests else "no settled do-not-call file",
    )


def _problem(context: SensorEvaluationContext, f: InboxFile) -> str | None:
    try:
        code = dnc_scope(f.path)
    except ValueError as exc:
        return str(exc)
    if code is None:
        return None
    with context.resources.postgres.connect("numbase-dnc-sensor", autocommit=True) as conn:
        if live_project(conn, code=code) is None:
            return f"no live project with code {code!r}"
    return None
