"""The SFTP inbox sensor: whole files in `inbox/` become import runs.

Folder convention: models/sftp_layout.py. A file is imported when it is whole, which is one of:

- **its done-marker exists** (`<file>.done` beside it, any content): imported on the next tick;
- **no marker convention in its folder**, its size and mtime held still for
  `NUMBASE_SFTP_SETTLE_SECONDS` (and at least across two ticks), and it looks complete
  (models/delivery.py: a CSV/TSV ends with a line break, an XLSX has its zip directory). One that
  does not look complete waits; once it has held still for `NUMBASE_SFTP_INCOMPLETE_TIMEOUT_SECONDS`
  it is rejected as truncated. Never is a prefix imported.

A folder uses the marker convention when a marker is in it now, or an earlier import from it came
with one: from then on its files wait for their markers. Temporary upload names (`*.part`,
`*.tmp`, `*.filepart`, dot-files) are never files.

Identity is content: a file whose bytes (sha256) a completed import of the same project and
provider already read is archived to `processed/` without a run; different bytes under the same
name, size and mtime are a new delivery. To keep ticks cheap the sensor reads a file's bytes only
when such an earlier import of exactly that size exists; the import asset hashes what it
downloads and stores it on the job (`sftp_jobs.content_sha256`).

A file that maps to no live project, to an unknown provider, or to one that may not deliver to
the project (sftp_access.import_refusal, the rule the API applies too) is moved to `rejected/` with
a `.error.txt` and recorded as a failed job. Each accepted file becomes a dynamic partition of the
import asset (the key is its path) and a run with `run_key = inbox:<path>:job<id>`.
"""

from __future__ import annotations

import json
import posixpath
import time
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

from models import sftp_access, sftp_jobs
from models.delivery import HEAD_BYTES, incomplete_reason, sha256_of, tail_bytes_needed
from models.settings import load_settings
from models.sftp_layout import (
    INBOX,
    InboxMappingError,
    archive_file,
    done_marker,
    is_dnc_path,
    is_registry_path,
    parse_inbox_path,
    reject_file,
)
from sensors.inbox_files import InboxFile, list_inbox, plan_tick

IMPORT_OP = "phone_numbers"


def import_run_config(job_id: int) -> dict[str, Any]:
    return {"ops": {IMPORT_OP: {"config": {"job_id": job_id}}}}


@sensor(
    name="sftp_inbox_sensor",
    job_name=sftp_jobs.IMPORT_JOB,
    minimum_interval_seconds=10,
    required_resource_keys={"sftp", "postgres"},
    default_status=DefaultSensorStatus.RUNNING,
    description="Imports files that land in the SFTP inbox (inbox/<project>/[<provider>/]file).",
)
def sftp_inbox_sensor(context: SensorEvaluationContext) -> SensorResult | SkipReason:
    settings = load_settings()
    cursor = json.loads(context.cursor) if context.cursor else {}
    run_requests: list[RunRequest] = []
    partitions: list[str] = []
    now = time.time()
    with context.resources.sftp.session() as sftp:
        if not sftp.is_dir(INBOX):
            return SkipReason(f"the SFTP server has no {INBOX}/ folder (relative to its root)")
        files, markers = list_inbox(sftp)
        files = [f for f in files if not (is_dnc_path(f.path) or is_registry_path(f.path))]
        ready, lingering, new_cursor = plan_tick(
            cursor, files, markers, now, settings.sftp_settle_seconds
        )
        if ready or lingering:
            tick = _Tick(context, sftp, markers, now, settings.sftp_incomplete_timeout_seconds)
            with context.resources.postgres.connect(
                "numbase-inbox-sensor", autocommit=True
            ) as conn:
                tick.conn = conn
                for f in lingering:  # requested earlier and still here
                    if _gone_is_false(tick.lingering, f):  # a new delivery after all
                        new_cursor["requested"].pop(f.path, None)
                        ready.append((f, done_marker(f.path) in markers, now))
                for f, marked, since in ready:
                    try:
                        outcome = tick.ready(f, marked, since)
                    except FileNotFoundError:  # moved or deleted since the listing
                        outcome = "wait"
                    if outcome == "wait":
                        continue
                    new_cursor["requested"][f.path] = f.key
                    if isinstance(outcome, RunRequest):
                        run_requests.append(outcome)
                        partitions.append(f.path)
    context.log.info(f"inbox: {len(files)} file(s), {len(run_requests)} import(s) requested")
    return SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=(
            [AddDynamicPartitionsRequest(sftp_jobs.INBOX_PARTITIONS, partitions)]
            if partitions
            else []
        ),
        cursor=json.dumps(new_cursor, sort_keys=True),
        skip_reason=None
        if run_requests
        else f"{len(files)} file(s) waiting to settle or in flight",
    )


class _Tick:
    """What one tick decides about the files that are ready to judge."""

    def __init__(
        self, context: SensorEvaluationContext, sftp: Any, markers: set[str], now: float,
        incomplete_timeout: float,
    ) -> None:  # fmt: skip
        self.log = context.log
        self.sftp = sftp
        self.markers = markers
        self.now = now
        self.incomplete_timeout = incomplete_timeout
        self.conn: Any = None

    def lingering(self, f: InboxFile) -> bool:
        """A file requested earlier (same size and mtime) is still, or again, here. True: it is
        a new delivery after all (judge it like any ready file).

        In flight, or failed with the file left in place: leave it. Nothing on record for this
        inbox path (its job's file was rejected, i.e. moved): new. Completed: the archive move
        failed (same bytes: archive now), or new bytes came under the same name, size, mtime."""
        jobs = sftp_jobs.find_imports(self.conn, f.path, sftp_jobs.STATUSES)
        if not jobs:
            return True
        job = jobs[0]
        if job.status != "completed":
            return False
        if job.content_sha256 and self._sha256(f) == job.content_sha256:
            self._archive_duplicate(f, job.id)
            return False
        return True

    def ready(self, f: InboxFile, marked: bool, since: float) -> RunRequest | str:
        """A run request, "wait" (look again next tick), or "done" (handled without a run)."""
        fingerprint = {"source": sftp_jobs.INBOX_SOURCE, "size": f.size, "mtime": f.mtime}
        active = sftp_jobs.find_imports(self.conn, f.path, sftp_jobs.ACTIVE)
        mine = [j for j in active if all(j.params.get(k) == v for k, v in fingerprint.items())]
        if mine:  # created by an earlier tick whose run request got lost: ask again (same key)
            return _request(f, mine[0].id)
        if active:
            self.log.info(f"{f.path}: job {active[0].id} already handles this file")
            return "wait"
        try:
            project_id, provider_id = self._mapping(f)
        except InboxMappingError as exc:
            self._reject(f, None, f"{f.path}: {exc}", fingerprint)
            return "done"
        if not marked and self._folder_uses_markers(f.folder):
            self.log.info(f"{f.path}: waiting for {done_marker(f.path)}")
            return "wait"
        if not marked:
            reason = self._incomplete(f)
            if reason is not None:
                if self.now - since < self.incomplete_timeout:
                    self.log.info(f"{f.path}: {reason}; waiting")
                    return "wait"
                held = int(self.now - since)
                why = f"{f.path}: {reason} (unchanged for {held} s)"
                self._reject(f, project_id, why, fingerprint)
                return "done"
        params: dict[str, Any] = {**fingerprint, "done_marker": marked}
        earlier = sftp_jobs.completed_imports_of_size(self.conn, project_id, provider_id, f.size)
        if earlier:  # only then is reading the bytes worth it
            digest = params["sha256"] = self._sha256(f)
            same = next((j for j in earlier if j.content_sha256 == digest), None)
            if same is not None:
                self._archive_duplicate(f, same.id)
                return "done"
        job_id = sftp_jobs.create_job(
            self.conn,
            job_type="import",
            project_id=project_id,
            provider_id=provider_id,
            file_path=f.path,
            params=params,
        )
        return _request(f, job_id)

    def _mapping(self, f: InboxFile) -> tuple[int, int | None]:
        project_code, provider_code = parse_inbox_path(f.path)
        project = sftp_access.live_project(self.conn, code=project_code)
        if project is None:
            raise InboxMappingError(f"no live project with code {project_code!r}")
        provider_id = None
        if provider_code is not None:
            provider_id = sftp_access.provider_by_code(self.conn, provider_code)
            if provider_id is None:
                raise InboxMappingError(f"no provider with code {provider_code!r}")
        refusal = sftp_access.import_refusal(self.conn, project[0], provider_id)
        if refusal is not None:
            raise InboxMappingError(refusal)
        return project[0], provider_id

    def _folder_uses_markers(self, folder: str) -> bool:
        if any(posixpath.dirname(m) == folder for m in self.markers):
            return True
        row = self.conn.execute(
            "SELECT 1 FROM sftp_jobs WHERE job_type = 'import' AND status = 'completed'"
            " AND (params->>'done_marker')::boolean AND file_path LIKE %s AND file_path NOT LIKE %s"
            " LIMIT 1",
            (_like(folder) + "/%", _like(folder) + "/%/%"),
        ).fetchone()
        return row is not None

    def _incomplete(self, f: InboxFile) -> str | None:
        with self.sftp.sftp.open(f.path, "rb") as fh:
            head = fh.read(HEAD_BYTES)
            fh.seek(max(0, f.size - tail_bytes_needed(head)))
            tail = fh.read()
        return incomplete_reason(head, tail, f.size)

    def _sha256(self, f: InboxFile) -> str:
        with self.sftp.sftp.open(f.path, "rb") as fh:
            fh.prefetch(f.size)
            return sha256_of(iter(lambda: fh.read(1 << 20), b""))

    def _archive_duplicate(self, f: InboxFile, job_id: int) -> None:
        target = archive_file(self.sftp, f.path, job_id)
        self.log.info(f"{f.path}: the same bytes were imported by job {job_id}; now {target}")

    def _reject(
        self, f: InboxFile, project_id: int | None, reason: str, fingerprint: dict[str, Any]
    ) -> None:
        job_id = sftp_jobs.create_job(
            self.conn,
            job_type="import",
            project_id=project_id,
            file_path=f.path,
            params={**fingerprint, "original_path": f.path},
            status="failed",
            error=reason,
        )
        sftp_jobs.set_path(self.conn, job_id, reject_file(self.sftp, f.path, reason, job_id))
        self.log.warning(f"rejected {reason}")


def _gone_is_false(judge: Any, f: InboxFile) -> bool:
    try:
        return bool(judge(f))
    except FileNotFoundError:  # moved or deleted since the listing: nothing to decide
        return False


def _like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _request(f: InboxFile, job_id: int) -> RunRequest:
    # The job id, not size + mtime: new bytes under the same name, size and mtime are a new run.
    return RunRequest(
        run_key=f"inbox:{f.path}:job{job_id}",
        partition_key=f.path,
        run_config=import_run_config(job_id),
        tags={sftp_jobs.JOB_TAG: str(job_id)},
    )
