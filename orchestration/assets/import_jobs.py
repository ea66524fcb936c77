"""Which job a run of the import asset works for, which file it reads, and its asset checks.

A run carries its job id (sensor runs and API requests). A partition materialised from the UI
carries none (job_id 0), and is the data engineer's first instinct for "import this again":

- the file is in the inbox: a new job for it (refused while another job is importing it);
- it was imported and archived: the archived copy in `processed/` is imported again. The loader's
  ON CONFLICT makes that insert nothing already present, so it is idempotent, and the archive
  stays where it is;
- neither: refused up front with what to do - no job is created and no good import turns red.

A job that is not completed and whose file is gone fails with that reason before it is claimed.
"""

from __future__ import annotations

from typing import Any

from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec

from models import sftp_access, sftp_jobs
from models.sftp_layout import InboxMappingError, parse_inbox_path
from orchestration.assets.common import final_failure
from orchestration.resources import SFTPResource

ASSET = "phone_numbers"
CHECKS = [
    AssetCheckSpec(
        "counts_add_up",
        asset=ASSET,
        description="rows read = inserted + duplicates in the file + already present + "
        "duplicates elsewhere (dedupe scope) + invalid",
    ),
    AssetCheckSpec(
        "job_completed",
        asset=ASSET,
        description="the sftp_jobs row is completed, with the inserted count and the content hash",
    ),
]


def source_path(job: sftp_jobs.JobRow, partition: str) -> str:
    """Where the run reads: the inbox file, or the archived copy a re-import names."""
    return str(job.params.get("read_from") or job.file_path or partition)


def resolve_job(conn: Any, sftp_res: SFTPResource, job_id: int, path: str) -> sftp_jobs.JobRow:
    if job_id:
        job = sftp_jobs.get_job(conn, job_id)
        if job is None or job.job_type != "import":
            raise final_failure(f"sftp job {job_id} does not exist or is not an import", job_id)
        if job.file_path != path and job.status == "failed":
            raise final_failure(
                f"sftp job {job_id} failed and its file was moved to {job.file_path}; upload a "
                f"corrected file to {path} to import it (the inbox sensor then imports it)",
                job_id,
            )
        if job.file_path != path:
            raise final_failure(
                f"sftp job {job_id} is for {job.file_path!r}, not partition {path!r}", job_id
            )
        if job.status != "completed" and not _exists(sftp_res, source_path(job, path)):
            message = (
                f"{source_path(job, path)} is no longer on the SFTP server, so job {job.id} "
                "cannot run; to import the file, upload it again to its inbox folder"
            )
            sftp_jobs.fail(conn, job.id, message)
            raise final_failure(message, job.id)
        return job
    return _job_for_materialisation(conn, sftp_res, path)


def _job_for_materialisation(conn: Any, sftp_res: SFTPResource, path: str) -> sftp_jobs.JobRow:
    try:
        project_code, provider_code = parse_inbox_path(path)
        project = sftp_access.live_project(conn, code=project_code)
        if project is None:
            raise InboxMappingError(f"no live project with code {project_code!r}")
        provider_id = sftp_access.provider_by_code(conn, provider_code) if provider_code else None
        if provider_code and provider_id is None:
            raise InboxMappingError(f"no provider with code {provider_code!r}")
        refusal = sftp_access.import_refusal(conn, project[0], provider_id)
        if refusal is not None:
            raise InboxMappingError(refusal)
    except InboxMappingError as exc:
        raise final_failure(f"{path}: {exc}", 0) from None
    busy = sftp_jobs.active_import(conn, path)
    if busy is not None:
        raise final_failure(f"{path}: job {busy} is importing this file now; wait for it", busy)
    params: dict[str, Any] = {"source": "dagster-ui"}
    if not _exists(sftp_res, path):
        archived = _archived_copy(conn, sftp_res, path)
        if archived is None:
            raise final_failure(
                f"{path} is not in the inbox and no archived copy of an import of it exists; "
                f"upload it again to {path} to import it",
                0,
            )
        params["read_from"] = archived
    new_id = sftp_jobs.create_job(
        conn,
        job_type="import",
        project_id=project[0],
        provider_id=provider_id,
        file_path=path,
        params=params,
    )
    job = sftp_jobs.get_job(conn, new_id)
    assert job is not None
    return job


def _archived_copy(conn: Any, sftp_res: SFTPResource, path: str) -> str | None:
    for job in sftp_jobs.find_imports(conn, path, ("completed",)):
        archived = job.stats.get("archived_to")
        if archived and _exists(sftp_res, archived):
            return str(archived)
    return None


def _exists(sftp_res: SFTPResource, path: str) -> bool:
    with sftp_res.session() as sftp:
        return sftp.stat(path) is not None


def check_results(conn: Any, job_id: int) -> list[AssetCheckResult]:
    """The asset checks, from what the job row says after the run."""
    job = sftp_jobs.get_job(conn, job_id)
    stats = job.stats if job else {}
    parts = {k: int(stats.get(k) or 0) for k in
             ("read", "inserted", "duplicate_in_input", "already_present",
              "duplicate_elsewhere", "invalid")}  # fmt: skip
    accounted = sum(v for k, v in parts.items() if k != "read")
    records = conn.execute(
        "SELECT records_count FROM sftp_jobs WHERE id = %s", (job_id,)
    ).fetchone()
    done = (
        job is not None
        and job.status == "completed"
        and records is not None
        and records[0] == parts["inserted"]
        and bool(job.content_sha256)
    )
    return [
        AssetCheckResult(
            check_name="counts_add_up",
            asset_key=ASSET,
            passed=parts["read"] == accounted,
            severity=AssetCheckSeverity.ERROR,
            metadata={**parts, "accounted": accounted, "job_id": job_id},
        ),
        AssetCheckResult(
            check_name="job_completed",
            asset_key=ASSET,
            passed=done,
            severity=AssetCheckSeverity.ERROR,
            metadata={
                "job_id": job_id,
                "status": job.status if job else "missing",
                "content_sha256": (job.content_sha256 if job else None) or "",
            },
        ),
    ]
