"""The import asset: one dynamic partition per SFTP file, loaded through the bulk loader.

Order of work, and why:
1. resolve and claim the sftp_jobs row (import_jobs.py; pending/failed -> running; a completed
   job is never redone; a UI materialisation of an archived file re-imports the archived copy);
2. download to a temp file (prefetch) - an SFTP network error retries with backoff. A file that
   is not whole (models/delivery.py) or changed while downloading is not imported: the job fails
   with the reason and the file stays for the inbox sensor to judge again;
3. parse + load + content hash + mark the job completed + audit row in ONE transaction: the
   file lands whole or not at all, and the row lock on the job serialises two runs of the job;
4. only after commit: upload `rejected/<file>.job<id>.rejects.csv` (if rows were dropped) and
   move the source to `processed/`. If that fails the retry finds the job completed and archives.
A bad file (unreadable, no phone column, ...) goes to `rejected/` with `<file>.error.txt`; a
database failure leaves the file in `inbox/` and the job failed. The asset checks
`counts_add_up` and `job_completed` report every run's health in the UI.
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

from models import job_recovery, sftp_jobs
from models.bulk import BulkLoadError, Reject, load_numbers
from models.delivery import file_sha256, local_incomplete_reason
from models.number_loads import LoadSource
from models.sftp_layout import archive_file, reject_file, rejects_report_path
from orchestration.assets.common import SFTP_RETRY, fail_job, final_failure, is_transient
from orchestration.assets.import_jobs import CHECKS, check_results, resolve_job, source_path
from orchestration.parsers import ParseError, parse_file
from orchestration.resources import PostgresResource, SFTPResource, SFTPUnavailable

inbox_files = DynamicPartitionsDefinition(name=sftp_jobs.INBOX_PARTITIONS)


class ImportConfig(Config):
    job_id: int = Field(
        default=0,
        description="sftp_jobs id; 0 creates a job from the partition's path "
        "(materialising a partition from the UI)",
    )


def _archive(
    sftp_res: SFTPResource, postgres: PostgresResource, job: sftp_jobs.JobRow
) -> str | None:
    """Move the imported inbox file to processed/ and note where (a re-import reads it there)."""
    assert job.file_path is not None
    with sftp_res.session() as sftp:
        if sftp.stat(job.file_path) is None:
            return None
        target = archive_file(sftp, job.file_path, job.id)
    with postgres.connect("numbase-import-archived", autocommit=True) as conn:
        sftp_jobs.note(conn, job.id, archived_to=target)
    return target


@asset(
    name="phone_numbers",
    partitions_def=inbox_files,
    retry_policy=SFTP_RETRY,
    group_name="sftp",
    kinds={"sftp", "postgres"},
    check_specs=CHECKS,
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
    try:
        with postgres.connect("numbase-import-claim", autocommit=True) as conn:
            job = resolve_job(conn, sftp, config.job_id, path)  # may look on SFTP
            claimed = sftp_jobs.claim(conn, job.id, run_id)
    except SFTPUnavailable as exc:
        # Down before the job was claimed: the in-run retries, then this attempt ends (a retry
        # later) for the pending job at the attempt this run was started for.
        if context.retry_number < SFTP_RETRY.max_retries:
            context.log.warning(f"attempt {context.retry_number + 1}: {exc}; retrying")
            raise
        message = f"SFTP unavailable after retries: {exc}"
        if config.job_id:
            raw = context.run.tags.get(job_recovery.ATTEMPT_TAG, "1")
            attempt = int(raw) if raw.isdigit() else 1
            fail_job(postgres, config.job_id, message, run_id, transient=True, attempt=attempt)
        raise final_failure(message, config.job_id, transient=True) from exc
    if claimed is None:
        # Completed by an earlier attempt/run: never load twice, only finish the archiving.
        moved = _archive(sftp, postgres, job) if "read_from" not in job.params else None
        context.log.info(f"job {job.id} already completed; archived leftover: {moved}")
        with postgres.connect("numbase-import-checks", autocommit=True) as conn:
            checks = check_results(conn, job.id)
        return MaterializeResult(
            metadata={"job_id": job.id, "skipped": "already completed"}, check_results=checks
        )
    try:
        return _import(context, claimed, sftp, postgres)
    except SFTPUnavailable as exc:
        if context.retry_number < SFTP_RETRY.max_retries:
            context.log.warning(f"attempt {context.retry_number + 1}: {exc}; retrying")
            raise
        fail_job(postgres, job.id, f"SFTP unavailable after retries: {exc}", run_id, transient=True)
        raise final_failure(
            f"SFTP unavailable after retries: {exc}", job.id, transient=True
        ) from exc
    except ParseError as exc:
        reason = f"{path}: {exc.reason}"
        # An archived copy read again stays archived; an inbox file goes to rejected/.
        where = None if "read_from" in job.params else _reject(sftp, path, reason, job.id)
        if where:
            _moved(postgres, job.id, where)
        fail_job(postgres, job.id, reason + (f" (moved to {where})" if where else ""), run_id)
        raise final_failure(reason, job.id, rejected_to=where or "") from None
    except NotWhole as exc:
        # Final for this job: the file stays in the inbox, and once it changes the inbox sensor
        # judges it again as a new delivery (a retry of this job would race that).
        fail_job(postgres, job.id, str(exc), run_id)
        raise final_failure(str(exc), job.id) from None
    except BulkLoadError as exc:
        # A lock or statement timeout (BulkLoadTimeout) is transient; bad arguments are not.
        transient = bool(getattr(exc, "transient", False))
        fail_job(postgres, job.id, f"{path}: {exc}", run_id, transient=transient)
        raise final_failure(f"{path}: {exc}", job.id, transient=transient) from None
    except Exception as exc:
        if isinstance(exc, Failure):
            raise
        message = f"{path}: import rolled back, the file stays where it is: {exc!r}"
        fail_job(postgres, job.id, message, run_id, transient=is_transient(exc))
        raise final_failure(message, job.id, transient=is_transient(exc)) from exc


class NotWhole(Exception):
    """The downloaded file is not the whole delivery; nothing is imported, the file stays."""


def _whole_or_refuse(
    job: sftp_jobs.JobRow, source: str, local: Path, before: Any, after: Any
) -> None:
    """Never import part of a file: one still changing, or one that does not end whole."""
    size = local.stat().st_size
    if before is None or after is None or (before.st_size, before.st_mtime) != (
        after.st_size, after.st_mtime
    ) or after.st_size != size:  # fmt: skip
        raise NotWhole(
            f"{source} changed while it was downloaded (upload still running?); not imported, "
            "the inbox sensor imports it once it is whole"
        )
    if job.params.get("done_marker"):
        return  # the vendor's marker says whole (a last line without a line break is fine)
    reason = local_incomplete_reason(local)
    if reason is not None:
        raise NotWhole(f"{source}: {reason}; not imported, the file stays where it is")


def _moved(postgres: PostgresResource, job_id: int, path: str) -> None:
    """Record where the job's file went (the inbox path is then free for a new delivery)."""
    try:
        with postgres.connect("numbase-job-status", autocommit=True) as conn:
            sftp_jobs.set_path(conn, job_id, path)
    except Exception:  # noqa: BLE001 - the job still fails with its reason
        pass


def _reject(sftp_res: SFTPResource, path: str, reason: str, job_id: int) -> str | None:
    try:
        with sftp_res.session() as sftp:
            return reject_file(sftp, path, reason, job_id)
    except Exception:  # noqa: BLE001 - the job still fails with its reason
        return None


def _import(
    context: AssetExecutionContext,
    job: sftp_jobs.JobRow,
    sftp_res: SFTPResource,
    postgres: PostgresResource,
) -> MaterializeResult:
    path = job.file_path or context.partition_key
    source = source_path(job, path)
    assert job.project_id is not None
    column_map = job.params.get("column_map") or {}
    with tempfile.TemporaryDirectory(prefix="numbase-import-") as tmp:
        local = Path(tmp) / "source"
        started = time.perf_counter()
        with sftp_res.session() as sftp:
            before = sftp.stat(source)
            size = sftp.download(source, local)
            after = sftp.stat(source)
        download_s = time.perf_counter() - started
        _whole_or_refuse(job, source, local, before, after)
        digest = file_sha256(local)

        rejects_file = Path(tmp) / "rejects.csv"
        with rejects_file.open("w", newline="", encoding="utf-8") as rej_fh:
            writer = csv.writer(rej_fh)
            writer.writerow(["line", "raw_value", "reason"])

            def on_reject(r: Reject) -> None:
                # The report names the other project of a cross-project duplicate.
                writer.writerow([r.line, r.raw, r.report_reason])

            with (
                postgres.connect(f"numbase-import:{job.id}") as conn,
                conn.transaction(),
            ):
                locked = sftp_jobs.get_job(conn, job.id, lock=True)
                # Still ours? A run whose attempt was ended meanwhile must not commit.
                owner = ("running", job.dagster_run_id)
                if locked is None or (locked.status, locked.dagster_run_id) != owner:
                    raise final_failure(f"job {job.id} changed meanwhile ({locked})", job.id)
                result = load_numbers(
                    conn,
                    job.project_id,
                    parse_file(local, column_map=column_map, region=postgres.phone_region),
                    provider_id=job.provider_id,
                    region=postgres.phone_region,
                    reject_limit=20,
                    on_reject=on_reject,
                    record=LoadSource("sftp", source=path, sftp_job_id=job.id),
                )
                stats = {
                    **result.as_dict(),
                    "bytes": size,
                    "download_seconds": round(download_s, 3),
                    "total_seconds": round(time.perf_counter() - started, 3),
                }
                # The stats are read through the API: no other project's code in them.
                stats["rejects"] = [r.public() for r in result.rejects]
                if source != path:
                    stats["read_from"] = source
                sftp_jobs.set_content(conn, job.id, digest)
                sftp_jobs.complete(
                    conn, job.id, records=result.inserted, stats=stats,
                    action="sftp_import.completed",
                )  # fmt: skip
        # Committed. From here on a failure is only about archiving: a network error retries
        # (the retry finds the job completed and archives); anything else is reported, since
        # the numbers are in and the inbox sensor will not load the same bytes again.
        report = archived = None
        archive_error = ""
        try:
            if result.invalid or result.duplicate_elsewhere:
                report = rejects_report_path(path, job.id)
                with sftp_res.session() as sftp:
                    sftp.makedirs(posixpath.dirname(report))
                    sftp.upload(rejects_file, report)
            if source == path:  # a re-import leaves the archived copy where it is
                archived = _archive(sftp_res, postgres, job)
        except SFTPUnavailable:
            raise
        except Exception as exc:
            archive_error = f"committed, but archiving failed: {exc!r}"
            context.log.warning(f"{path}: {archive_error}")
    total = time.perf_counter() - started
    with postgres.connect("numbase-import-checks", autocommit=True) as conn:
        checks = check_results(conn, job.id)
    context.log.info(
        f"{path}: read {result.read}, inserted {result.inserted}, invalid {result.invalid}, "
        f"duplicates {result.duplicate_in_input}+{result.already_present}"
        f"+{result.duplicate_elsewhere} elsewhere in {total:.1f}s"
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
            "duplicate_elsewhere": result.duplicate_elsewhere,
            "load_id": result.load_id or 0,
            "invalid": result.invalid,
            "on_dnc": result.on_dnc,
            "seconds": round(total, 3),
            "load_seconds": round(result.seconds, 3),
            "rows_per_second": round(result.read / total, 1) if total else 0.0,
            "bytes": size,
            "sha256": digest,
            "read_from": source,
            "archived_to": archived or "",
            "archive_error": archive_error,
            "rejects_report": report or "",
            "first_rejects": MetadataValue.md(
                "\n".join(f"- line {r.line}: `{r.raw}` {r.report_reason}" for r in result.rejects)
                or "none"
            ),
        },
        check_results=checks,
    )
