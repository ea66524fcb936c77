"""The export asset: a project's numbers (the numbers list's filters) as CSV in the SFTP outbox.

`COPY (SELECT ...) TO STDOUT` streams straight into `outbox/<project code>/<name>.csv.job<id>.part`,
renamed to `outbox/<project code>/<name>.csv` only when complete, so a reader never sees half a
file. Memory stays flat. Each project writes only into its own folder, and the final rename is a
plain SFTP rename, which refuses to replace an existing file: a completed export (or anything a
person put there) is never overwritten - the job fails with the reason instead.
"""

import dataclasses
import posixpath
import time

from dagster import AssetExecutionContext, Config, Failure, MaterializeResult, asset

from models import sftp_access, sftp_jobs
from models.db import make_engine
from models.number_filters import (
    FilterError,
    NumberFilters,
    copy_query,
    filters_as_params,
    with_callable,
)
from models.sftp_layout import export_path, export_stem
from orchestration.assets.common import SFTP_RETRY, fail_job, final_failure
from orchestration.resources import PostgresResource, SFTPResource, SFTPSession, SFTPUnavailable


class ExportConfig(Config):
    job_id: int


@asset(
    name="numbers_export",
    retry_policy=SFTP_RETRY,
    group_name="sftp",
    kinds={"postgres", "sftp"},
    description="CSV exports of a project's numbers to the SFTP outbox (one per sftp_jobs row).",
)
def numbers_export(
    context: AssetExecutionContext,
    config: ExportConfig,
    sftp: SFTPResource,
    postgres: PostgresResource,
) -> MaterializeResult:
    run_id = context.run.run_id
    with postgres.connect("numbase-export-claim", autocommit=True) as conn:
        job = sftp_jobs.get_job(conn, config.job_id)
        if job is None or job.job_type != "export":
            raise final_failure(f"sftp job {config.job_id} does not exist or is not an export", 0)
        claimed = sftp_jobs.claim(conn, job.id, run_id)
        project = sftp_access.live_project(conn, id=job.project_id) if job.project_id else None
    if claimed is None:
        return MaterializeResult(metadata={"job_id": job.id, "skipped": "already completed"})
    try:
        if project is None:
            raise final_failure(f"project {job.project_id} does not exist or is deleted", job.id)
        try:
            filters = NumberFilters.from_params(job.params.get("filters") or {})
        except FilterError as exc:
            raise final_failure(f"params.filters: {exc}", job.id) from None
        # The job's project always wins over whatever the filters say.
        filters = dataclasses.replace(filters, project_id=project[0])
        filters = _with_callable(postgres, filters)
        final = export_path(project[1], export_stem(job.params.get("name"), project[1], job.id))
        with postgres.connect("numbase-export-claim", autocommit=True) as conn:
            holder = sftp_jobs.export_holding(conn, final)
        if holder not in (None, job.id):
            raise final_failure(f"{final} belongs to export job {holder}; not overwritten", job.id)
        return _export(context, claimed, filters, final, sftp, postgres)
    except SFTPUnavailable as exc:
        if context.retry_number < SFTP_RETRY.max_retries:
            context.log.warning(f"attempt {context.retry_number + 1}: {exc}; retrying")
            raise
        fail_job(postgres, job.id, f"SFTP unavailable after retries: {exc}", run_id)
        raise final_failure(f"SFTP unavailable after retries: {exc}", job.id) from exc
    except Failure as exc:
        fail_job(postgres, job.id, exc.description or str(exc), run_id)
        raise
    except Exception as exc:
        fail_job(postgres, job.id, f"export failed: {exc!r}", run_id)
        raise final_failure(f"export failed: {exc!r}", job.id) from exc


def _with_callable(postgres: PostgresResource, filters: NumberFilters) -> NumberFilters:
    """callable_now / eligible_now are decided when the export runs (models/dialing/)."""
    if filters.callable_now is None and filters.eligible_now is None:
        return filters
    engine = make_engine(postgres.url(), pool_size=None)
    try:
        with engine.connect() as conn:
            return with_callable(conn, filters)  # type: ignore[arg-type]
    finally:
        engine.dispose()


def _write(
    job_id: int, filters: NumberFilters, sftp: SFTPSession, part: str, postgres: PostgresResource
) -> tuple[int, int]:
    """COPY the numbers into the part file; (rows, bytes)."""
    query, params = copy_query(filters)
    written = 0
    with postgres.connect(f"numbase-export:{job_id}") as conn:
        with conn.cursor() as cur, sftp.open_write(part) as fh:
            with cur.copy(query, params) as copy:
                for block in copy:
                    fh.write(bytes(block))
                    written += len(block)
            rows = cur.rowcount
        conn.rollback()  # read-only; end the snapshot before the slow part
    return rows, written


def _publish(sftp: SFTPSession, part: str, final: str, job_id: int) -> None:
    """Rename into place without replacing: SFTP's plain rename fails on an existing target."""
    try:
        sftp.sftp.rename(part, final)
    except OSError as exc:
        if sftp.stat(final) is None:
            raise
        sftp.remove(part)
        raise final_failure(
            f"{final} appeared meanwhile; not overwritten ({exc})", job_id
        ) from None


def _export(
    context: AssetExecutionContext,
    job: sftp_jobs.JobRow,
    filters: NumberFilters,
    final: str,
    sftp_res: SFTPResource,
    postgres: PostgresResource,
) -> MaterializeResult:
    started = time.perf_counter()
    job_id = job.id
    part = f"{final}.job{job_id}.part"  # never shared with another job's upload
    published = job.stats.get("published") or {}
    with sftp_res.session() as sftp:
        sftp.makedirs(posixpath.dirname(final))
        if (
            published.get("path") == final
            and sftp.stat(final) is not None
            and sftp.stat(part) is None
        ):
            # An earlier attempt renamed its file into place and lost the connection before it
            # could say so: the file is this job's, complete it without writing again.
            rows, written = int(published["rows"]), int(published["bytes"])
        else:
            if sftp.stat(final) is not None:
                raise final_failure(f"{final} already exists; an export never overwrites", job_id)
            rows, written = _write(job_id, filters, sftp, part, postgres)
            with postgres.connect("numbase-export-done", autocommit=True) as conn:
                sftp_jobs.note(conn, job_id, published={"path": final, "rows": rows,
                                                        "bytes": written})  # fmt: skip
            try:
                _publish(sftp, part, final, job_id)
            except Failure:  # the name was taken meanwhile: the file there is not ours
                with postgres.connect("numbase-export-done", autocommit=True) as conn:
                    sftp_jobs.note(conn, job_id, published=None)
                raise
    seconds = time.perf_counter() - started
    stats = {
        "published": {"path": final, "rows": rows, "bytes": written},
        "rows": rows,
        "bytes": written,
        "seconds": round(seconds, 3),
        "rows_per_second": round(rows / seconds, 1) if seconds else 0.0,
        "filters": filters_as_params(filters),  # JSON-safe (no callable_now SQL expression)
    }
    with postgres.connect("numbase-export-done", autocommit=True) as conn:
        sftp_jobs.complete(
            conn, job_id, records=rows, stats=stats, file_path=final, action="sftp_export.completed"
        )
    context.log.info(f"exported {rows} numbers to {final} in {seconds:.1f}s")
    return MaterializeResult(
        metadata={"job_id": job_id, "path": final, "rows": rows, "bytes": written,
                  "seconds": round(seconds, 3)}
    )  # fmt: skip
