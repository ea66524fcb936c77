"""The SFTP inbox sensor: stable files in `inbox/` become import runs.

Folder convention (paths relative to the SFTP root):

    inbox/<project code>/<file>                    numbers for that project
    inbox/<project code>/<provider code>/<file>    ... delivered by that provider

A file is imported once its size and mtime held still across two ticks and its name is not a
temporary upload name (`*.part`, `*.tmp`, `*.filepart`, dot-files). Each file becomes a dynamic
partition of the import asset (the key is its path, e.g. `inbox/acme/leadco/may.csv`) and a run
with `run_key = inbox:<path>:<size>:<mtime>`. A file that maps to no live project or no known
provider is moved to `rejected/` with a `.error.txt` and recorded as a failed job.
"""

from __future__ import annotations

import json
import posixpath
import stat
from dataclasses import dataclass
from typing import Any

from dagster import (
    AddDynamicPartitionsRequest,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from sensors import jobstore

INBOX = "inbox"
REJECTED = "rejected"
PROCESSED = "processed"
TEMP_SUFFIXES = (".part", ".tmp", ".filepart", ".crdownload", "~")
MAX_DEPTH = 3  # inbox/<project>/<provider>/<file>
IMPORT_OP = "phone_numbers"
# Do-not-call drop folders (sensors/dnc_inbox.py): inbox/_dnc/<file> (global) and
# inbox/<project code>/_dnc/<file>; the numbering-plan registry (sensors/registry_inbox.py):
# inbox/_registry/<file>. This sensor leaves them alone.
DNC_FOLDER = "_dnc"
REGISTRY_FOLDER = "_registry"


def is_registry_path(path: str) -> bool:
    parts = path.split("/")
    return len(parts) >= 3 and parts[1] == REGISTRY_FOLDER


def is_dnc_path(path: str) -> bool:
    parts = path.split("/")
    return len(parts) >= 3 and (
        parts[1] == DNC_FOLDER or (len(parts) >= 4 and parts[2] == DNC_FOLDER)
    )


@dataclass(frozen=True)
class InboxFile:
    path: str  # relative to the SFTP root: inbox/...
    size: int
    mtime: int

    @property
    def key(self) -> list[int]:
        return [self.size, self.mtime]

    @property
    def run_key(self) -> str:
        return f"inbox:{self.path}:{self.size}:{self.mtime}"


class InboxMappingError(ValueError):
    pass


def is_temporary(name: str) -> bool:
    return name.startswith(".") or name.lower().endswith(TEMP_SUFFIXES)


def parse_inbox_path(path: str) -> tuple[str, str | None]:
    """inbox/<project>[/<provider>]/<file> -> (project code, provider code or None)."""
    parts = path.split("/")
    if parts[0] != INBOX or len(parts) < 3:
        raise InboxMappingError(
            "files go into inbox/<project code>/ or inbox/<project code>/<provider code>/, "
            "not directly into inbox/"
        )
    if len(parts) > MAX_DEPTH + 1:
        raise InboxMappingError(
            "too deep: use inbox/<project code>/<file> or "
            "inbox/<project code>/<provider code>/<file>"
        )
    return parts[1], (parts[2] if len(parts) == 4 else None)


def list_inbox(sftp: Any) -> list[InboxFile]:
    """Every non-temporary file under inbox/ (walking at most MAX_DEPTH folders down)."""
    out: list[InboxFile] = []
    todo = [(INBOX, 0)]
    while todo:
        folder, depth = todo.pop()
        for entry in sftp.listdir_attr(folder):
            name = entry.filename
            if is_temporary(name):
                continue
            path = f"{folder}/{name}"
            if entry.st_mode is not None and stat.S_ISDIR(entry.st_mode):
                if depth < MAX_DEPTH:
                    todo.append((path, depth + 1))
            elif entry.st_mode is None or stat.S_ISREG(entry.st_mode):
                out.append(InboxFile(path, int(entry.st_size or 0), int(entry.st_mtime or 0)))
    return sorted(out, key=lambda f: f.path)


def moved_path(path: str, to: str) -> str:
    """inbox/a/b.csv -> <to>/a/b.csv (a path outside inbox/ keeps its whole path)."""
    rel = path[len(INBOX) + 1 :] if path.startswith(INBOX + "/") else path
    return f"{to}/{rel}"


def reject_file(sftp: Any, path: str, reason: str) -> str:
    """Move a file to rejected/ with `<name>.error.txt` beside it; returns the new path."""
    target = moved_path(path, REJECTED)
    sftp.makedirs(posixpath.dirname(target))
    sftp.rename(path, target)
    sftp.write_bytes(target + ".error.txt", (reason.rstrip() + "\n").encode())
    return target


def import_run_config(job_id: int) -> dict[str, Any]:
    return {"ops": {IMPORT_OP: {"config": {"job_id": job_id}}}}


def plan_tick(
    cursor: dict[str, Any], files: list[InboxFile]
) -> tuple[list[InboxFile], list[InboxFile], dict[str, Any]]:
    """Pure part of a tick: (stable files not yet requested, requested files still in the
    inbox, new cursor).

    cursor = {"seen": {path: [size, mtime]}, "requested": {path: [size, mtime]}}; paths that
    left the inbox are forgotten, so the cursor stays as small as the inbox.
    """
    seen = cursor.get("seen", {})
    requested = cursor.get("requested", {})
    ready = [f for f in files if seen.get(f.path) == f.key and requested.get(f.path) != f.key]
    lingering = [f for f in files if requested.get(f.path) == f.key]
    present = {f.path for f in files}
    new_cursor = {
        "seen": {f.path: f.key for f in files},
        "requested": {p: k for p, k in requested.items() if p in present},
    }
    return ready, lingering, new_cursor


@sensor(
    name="sftp_inbox_sensor",
    job_name=jobstore.IMPORT_JOB,
    minimum_interval_seconds=10,
    required_resource_keys={"sftp", "postgres"},
    default_status=DefaultSensorStatus.RUNNING,
    description="Imports files that land in the SFTP inbox (inbox/<project>/[<provider>/]file).",
)
def sftp_inbox_sensor(context: SensorEvaluationContext) -> SensorResult | SkipReason:
    cursor = json.loads(context.cursor) if context.cursor else {}
    sftp_res = context.resources.sftp
    postgres = context.resources.postgres
    run_requests: list[RunRequest] = []
    partitions: list[str] = []
    with sftp_res.session() as sftp:
        if not sftp.is_dir(INBOX):
            return SkipReason(f"the SFTP server has no {INBOX}/ folder (relative to its root)")
        files = [
            f for f in list_inbox(sftp) if not (is_dnc_path(f.path) or is_registry_path(f.path))
        ]
        ready, lingering, new_cursor = plan_tick(cursor, files)
        if ready or lingering:
            with postgres.connect("numbase-inbox-sensor", autocommit=True) as conn:
                for f in lingering:  # requested earlier and still here: imported already?
                    _archive_if_imported(context, sftp, conn, f)
                for f in ready:
                    request = _handle_ready_file(context, sftp, conn, f)
                    new_cursor["requested"][f.path] = f.key
                    if request is not None:
                        run_requests.append(request)
                        partitions.append(f.path)
    waiting = len(files) - len(ready)
    context.log.info(f"inbox: {len(files)} file(s), {len(run_requests)} import(s) requested")
    return SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=(
            [AddDynamicPartitionsRequest(jobstore.INBOX_PARTITIONS, partitions)]
            if partitions
            else []
        ),
        cursor=json.dumps(new_cursor, sort_keys=True),
        skip_reason=None if run_requests else f"{waiting} file(s) waiting to settle or in flight",
    )


def _handle_ready_file(
    context: SensorEvaluationContext, sftp: Any, conn: Any, f: InboxFile
) -> RunRequest | None:
    fingerprint = {"source": jobstore.INBOX_SOURCE, "size": f.size, "mtime": f.mtime}
    if _archive_if_imported(context, sftp, conn, f):
        return None
    active = jobstore.find_import(conn, f.path, ("pending", "running"))
    mine = [j for j in active if all(j.params.get(k) == v for k, v in fingerprint.items())]
    if mine:  # created by an earlier tick whose run request got lost: ask again (same run key)
        return _request(f, mine[0].id)
    if active:
        context.log.info(f"{f.path}: job {active[0].id} already handles this file")
        return None
    try:
        project_code, provider_code = parse_inbox_path(f.path)
        project = jobstore.live_project(conn, code=project_code)
        if project is None:
            raise InboxMappingError(f"no live project with code {project_code!r}")
        provider_id = None
        if provider_code is not None:
            provider_id = jobstore.provider_id_by_code(conn, provider_code)
            if provider_id is None:
                raise InboxMappingError(f"no provider with code {provider_code!r}")
    except InboxMappingError as exc:
        reason = f"{f.path}: {exc}"
        target = reject_file(sftp, f.path, reason)
        jobstore.create_job(
            conn,
            job_type="import",
            project_id=None,
            file_path=target,
            params={**fingerprint, "original_path": f.path},
            status="failed",
            error=reason,
        )
        context.log.warning(f"rejected {reason}")
        return None
    job_id = jobstore.create_job(
        conn,
        job_type="import",
        project_id=project[0],
        provider_id=provider_id,
        file_path=f.path,
        params=fingerprint,
    )
    return _request(f, job_id)


def _archive_if_imported(
    context: SensorEvaluationContext, sftp: Any, conn: Any, f: InboxFile
) -> bool:
    """A completed import of these very bytes (same path, size, mtime) is still in the inbox:
    the archive move after commit failed, or the same file came again within the same second.
    Loading it again would insert nothing, so archive it."""
    for job in jobstore.find_import(conn, f.path, ("completed",)):
        if job.params.get("size") == f.size and job.params.get("mtime") == f.mtime:
            target = moved_path(f.path, PROCESSED)
            if sftp.stat(target) is not None:
                target = f"{target}.job{job.id}.again"
            sftp.makedirs(posixpath.dirname(target))
            sftp.rename(f.path, target)
            context.log.info(f"{f.path}: already imported by job {job.id}; archived to {target}")
            return True
    return False


def _request(f: InboxFile, job_id: int) -> RunRequest:
    return RunRequest(
        run_key=f.run_key,
        partition_key=f.path,
        run_config=import_run_config(job_id),
        tags={jobstore.JOB_TAG: str(job_id)},
    )
