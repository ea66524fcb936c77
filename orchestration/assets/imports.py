"""The import asset: one dynamic partition per SFTP file, loaded through the bulk loader.

Order of work, and why:
1. claim the sftp_jobs row (pending/failed -> running; a completed job is never redone);
2. download to a temp file (prefetch) - an SFTP network error retries with backoff;
3. parse + load + mark the job completed + audit row in ONE transaction: the file lands whole
   or not at all, and the row lock on the job serialises two runs of the same job;
4. only after commit: upload `rejected/<file>.rejects.csv` (if rows were dropped) and move the
   source to `processed/`. If that fails the retry finds the job completed and just archives.
A bad file (unreadable, no phone column, ...) goes to `rejected/` with `<file>.error.txt`; a
database failure leaves the file in `inbox/` and the job failed.
"""

import csv
import posixpath
import tempfile
import time
from pathlib import Path
from typing import Any

from dagster import (
    AssetExecutionContext,
    Config,
    DynamicPartitionsDefinition,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from models.bulk import BulkLoadError, Reject, load_numbers
from orchestration.assets.common import SFTP_RETRY, fail_job, final_failure
from orchestration.parsers import ParseError, parse_file
from orchestration.resources import PostgresResource, SFTPResource, SFTPUnavailable
from sensors import jobstore
from sensors.inbox import (
    PROCESSED,
    REJECTED,
    InboxMappingError,
    moved_path,
    parse_inbox_path,
    reject_file,
)

inbox_files = DynamicPartitionsDefinition(name=jobstore.INBOX_PARTITIONS)


class ImportConfig(Config):
    job_id: int = Field(
        default=0,
        description="sftp_jobs id; 0 creates a job from the partition's path "
        "(materialising a partition from the UI)",
    )


def archive_path(sftp: Any, path: str, job_id: int) -> str:
    """processed/<same place>; never overwrite an earlier file of the same name."""
    target = moved_path(path, PROCESSED)
    if sftp.stat(target) is not None:
        head, tail = posixpath.split(target)
        stem, dot, ext = tail.rpartition(".")
        tail = f"{stem}.job{job_id}.{ext}" if dot and stem else f"{tail}.job{job_id}"
        target = posixpath.join(head, tail)
    return target


def _archive(sftp_res: SFTPResource, path: str, job_id: int) -> str | None:
    with sftp_res.session() as sftp:
        if sftp.stat(path) is None:
            return None
        target = archive_path(sftp, path, job_id)
        sftp.makedirs(posixpath.dirname(target))
        sftp.rename(path, target)
        return target


def _resolve_job(conn: Any, job_id: int, path: str) -> jobstore.JobRow:
    if job_id:
        job = jobstore.get_job(conn, job_id)
        if job is None or job.job_type != "import":
            raise final_failure(f"sftp job {job_id} does not exist or is not an import", job_id)
        if job.file_path != path:
            raise final_failure(
                f"sftp job {job_id} is for {job.file_path!r}, not partition {path!r}", job_id
            )
        return job
    # A partition materialised by hand: map it by the folder convention, like the sensor.
    try:
        project_code, provider_code = parse_inbox_path(path)
    except InboxMappingError as exc:
        raise final_failure(f"{path}: {exc}", 0) from None
    project = jobstore.live_project(conn, code=project_code)
    provider_id = jobstore.provider_id_by_code(conn, provider_code) if provider_code else None
    if project is None or (provider_code and provider_id is None):
        raise final_failure(f"{path}: no live project/provider for this folder", 0)
    new_id = jobstore.create_job(
        conn,
        job_type="import",
        project_id=project[0],
        provider_id=provider_id,
        file_path=path,
        params={"source": "dagster-ui"},
    )
    job = jobstore.get_job(conn, new_id)
    assert job is not None
    return job


@asset(
    name="phone_numbers",
    partitions_def=inbox_files,
    retry_policy=SFTP_RETRY,
    group_name="sftp",
    kinds={"sftp", "postgres"},
    description="Phone numbers imported from SFTP files: one partition per file "
    "(inbox/<project>/[<provider>/]<file>), loaded through the bulk loader.",
)
def phone_numbers(
    context: AssetExecutionContext,
    config: ImportConfig,
    sftp: SFTPResource,
    postgres: PostgresResource,
) -> MaterializeResult:
    path = context.partition_key
    run_id = context.run.run_id
    with postgres.connect("numbase-import-claim", autocommit=True) as conn:
        job = _resolve_job(conn, config.job_id, path)
        claimed = jobstore.mark_running(conn, job.id, run_id)
    if claimed is None:
        # Completed by an earlier attempt/run: never load twice, only finish the archiving.
        moved = _archive(sftp, path, job.id)
        context.log.info(f"job {job.id} already completed; archived leftover: {moved}")
        return MaterializeResult(metadata={"job_id": job.id, "skipped": "already completed"})
    try:
        return _import(context, claimed, sftp, postgres)
    except SFTPUnavailable as exc:
        if context.retry_number < SFTP_RETRY.max_retries:
            context.log.warning(f"attempt {context.retry_number + 1}: {exc}; retrying")
            raise
        fail_job(postgres, job.id, f"SFTP unavailable after retries: {exc}", run_id)
        raise final_failure(f"SFTP unavailable after retries: {exc}", job.id) from exc
    except ParseError as exc:
        reason = f"{path}: {exc.reason}"
        where = _reject(sftp, path, reason)
        fail_job(postgres, job.id, reason + (f" (moved to {where})" if where else ""), run_id)
        raise final_failure(reason, job.id, rejected_to=where or "") from None
    except BulkLoadError as exc:
        fail_job(postgres, job.id, f"{path}: {exc}", run_id)
        raise final_failure(f"{path}: {exc}", job.id) from None
    except Exception as exc:
        if isinstance(exc, Failure):
            raise
        message = f"{path}: import rolled back, the file stays where it is: {exc!r}"
        fail_job(postgres, job.id, message, run_id)
        raise final_failure(message, job.id) from exc


def _reject(sftp_res: SFTPResource, path: str, reason: str) -> str | None:
    try:
        with sftp_res.session() as sftp:
            return reject_file(sftp, path, reason)
    except Exception:  # noqa: BLE001 - the job still fails with its reason
        return None


def _import(
    context: AssetExecutionContext,
    job: jobstore.JobRow,
    sftp_res: SFTPResource,
    postgres: PostgresResource,
) -> MaterializeResult:
    path = job.file_path or context.partition_key
    assert job.project_id is not None
    column_map = job.params.get("column_map") or {}
    with tempfile.TemporaryDirectory(prefix="numbase-import-") as tmp:
        local = Path(tmp) / "source"
        started = time.perf_counter()
        with sftp_res.session() as sftp:
            size = sftp.download(path, local)
        download_s = time.perf_counter() - started

        rejects_file = Path(tmp) / "rejects.csv"
        with rejects_file.open("w", newline="", encoding="utf-8") as rej_fh:
            writer = csv.writer(rej_fh)
            writer.writerow(["line", "raw_value", "reason"])

            def on_reject(r: Reject) -> None:
                writer.writerow([r.line, r.raw, r.reason])

            with (
                postgres.connect(f"numbase-import:{job.id}") as conn,
                conn.transaction(),
            ):
                locked = jobstore.get_job(conn, job.id, lock=True)
                if locked is None or locked.status != "running":
                    raise final_failure(f"job {job.id} changed meanwhile ({locked})", job.id)
                result = load_numbers(
                    conn,
                    job.project_id,
                    parse_file(local, column_map=column_map, region=postgres.phone_region),
                    provider_id=job.provider_id,
                    region=postgres.phone_region,
                    reject_limit=20,
                    on_reject=on_reject,
                )
                stats = {
                    **result.as_dict(),
                    "bytes": size,
                    "download_seconds": round(download_s, 3),
                    "total_seconds": round(time.perf_counter() - started, 3),
                }
                stats["rejects"] = [vars(r) for r in result.rejects]
                jobstore.mark_completed(
                    conn, job.id, records=result.inserted, stats=stats,
                    action="sftp_import.completed",
                )  # fmt: skip
        # Committed. From here on a failure is only about archiving: a network error retries
        # (the retry finds the job completed and archives); anything else is reported, since
        # the numbers are in and the inbox sensor will not load the same bytes again.
        report = archived = None
        archive_error = ""
        try:
            if result.invalid:
                report = moved_path(path, REJECTED) + ".rejects.csv"
                with sftp_res.session() as sftp:
                    sftp.makedirs(posixpath.dirname(report))
                    sftp.upload(rejects_file, report)
            archived = _archive(sftp_res, path, job.id)
        except SFTPUnavailable:
            raise
        except Exception as exc:
            archive_error = f"committed, but archiving failed: {exc!r}"
            context.log.warning(f"{path}: {archive_error}")
    total = time.perf_counter() - started
    context.log.info(
        f"{path}: read {result.read}, inserted {result.inserted}, invalid {result.invalid}, "
        f"duplicates {result.duplicate_in_input}+{result.already_present} in {total:.1f}s"
    )
    return MaterializeResult(
        metadata={
            "job_id": job.id,
            "project_id": job.project_id,
            "provider_id": job.provider_id or 0,
            "rows_read": result.read,
            "inserted": result.inserted,
            "duplicates_in_file": result.duplicate_in_input,
            "already_present": result.already_present,
            "invalid": result.invalid,
            "on_dnc": result.on_dnc,
            "seconds": round(total, 3),
            "load_seconds": round(result.seconds, 3),
            "rows_per_second": round(result.read / total, 1) if total else 0.0,
            "bytes": size,
            "archived_to": archived or "",
            "archive_error": archive_error,
            "rejects_report": report or "",
            "first_rejects": MetadataValue.md(
                "\n".join(f"- line {r.line}: `{r.raw}` {r.reason}" for r in result.rejects)
                or "none"
            ),
        }
    )
