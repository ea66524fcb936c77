"""The export asset: a project's numbers (the numbers list's filters) as CSV in the SFTP outbox.

`COPY (SELECT ...) TO STDOUT` streams straight into `outbox/<name>.csv.part`, renamed to
`outbox/<name>.csv` only when complete, so a reader never sees half a file. Memory stays flat.
"""

import dataclasses
import re
import time

from dagster import AssetExecutionContext, Config, Failure, MaterializeResult, asset

from models.db import make_engine
from models.number_filters import (
    FilterError,
    NumberFilters,
    copy_query,
    filters_as_params,
    with_callable,
)
from orchestration.assets.common import SFTP_RETRY, fail_job, final_failure
from orchestration.resources import PostgresResource, SFTPResource, SFTPUnavailable
from sensors import jobstore

OUTBOX = "outbox"


class ExportConfig(Config):
    job_id: int


def export_name(requested: object, project_code: str, job_id: int) -> str:
    """A safe file stem: the requested name (sanitised) or <project>-<job id>."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", str(requested or "")).strip("._")[:100]
    stem = stem.removesuffix(".csv")
    return stem or f"{project_code}-export-{job_id}"


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
        job = jobstore.get_job(conn, config.job_id)
        if job is None or job.job_type != "export":
            raise final_failure(f"sftp job {config.job_id} does not exist or is not an export", 0)
        claimed = jobstore.mark_running(conn, job.id, run_id)
        project = jobstore.live_project(conn, id=job.project_id) if job.project_id else None
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
        name = export_name(job.params.get("name"), project[1], job.id)
        return _export(context, job.id, filters, name, sftp, postgres)
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
    """callable_now is decided when the export runs (models/dialing/eligibility.py)."""
    if filters.callable_now is None:
        return filters
    engine = make_engine(postgres.url(), pool_size=None)
    try:
        with engine.connect() as conn:
            return with_callable(conn, filters)  # type: ignore[arg-type]
    finally:
        engine.dispose()


def _export(
    context: AssetExecutionContext,
    job_id: int,
    filters: NumberFilters,
    name: str,
    sftp_res: SFTPResource,
    postgres: PostgresResource,
) -> MaterializeResult:
    started = time.perf_counter()
    final = f"{OUTBOX}/{name}.csv"
    part = final + ".part"
    query, params = copy_query(filters)
    written = 0
    with (
        sftp_res.session() as sftp,
        postgres.connect(f"numbase-export:{job_id}") as conn,
    ):
        sftp.makedirs(OUTBOX)
        with conn.cursor() as cur, sftp.open_write(part) as fh:
            with cur.copy(query, params) as copy:
                for block in copy:
                    fh.write(bytes(block))
                    written += len(block)
            rows = cur.rowcount
        conn.rollback()  # read-only; end the snapshot before the slow part
        sftp.rename(part, final)
    seconds = time.perf_counter() - started
    stats = {
        "rows": rows,
        "bytes": written,
        "seconds": round(seconds, 3),
        "rows_per_second": round(rows / seconds, 1) if seconds else 0.0,
        "filters": filters_as_params(filters),  # JSON-safe (no callable_now SQL expression)
    }
    with postgres.connect("numbase-export-done", autocommit=True) as conn:
        jobstore.mark_completed(
            conn, job_id, records=rows, stats=stats, file_path=final, action="sftp_export.completed"
        )
    context.log.info(f"exported {rows} numbers to {final} in {seconds:.1f}s")
    return MaterializeResult(
        metadata={"job_id": job_id, "path": final, "rows": rows, "bytes": written,
                  "seconds": round(seconds, 3)}
    )  # fmt: skip
