"""/api/sftp/: request SFTP imports and exports (durable `sftp_jobs` rows), read their jobs.

The API never talks to Dagster or the SFTP server: a request is a `pending` row (plus its audit
row, one transaction) that a Dagster sensor turns into a run (run key `sftp_job:<id>`); the run
writes running/completed/failed, counts and errors back. See sensors/job_requests.py for the
params the runs read: import {"column_map": {...}}, export {"filters": {...}, "name": "..."}.

Scope: a job is visible when its project is a live project in the caller's scope; jobs without a
project (files the inbox sensor could not map, rejected) are visible to admins only.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Query, Request
from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from api import audit
from api.deps import ClientDep, CurrentUser, SessionDep, SettingsDep, UserDep
from api.errors import FieldError, conflict, not_found
from api.number_scope import parse_filters
from api.pagination import Page, PageDep, apply_ordering, paginate
from api.schemas.common import CreatedAfter, CreatedBefore, IdPath, IdQuery, Ordering
from api.schemas.sftp import (
    ExportRequest,
    ImportRequest,
    JobStatus,
    JobType,
    SftpJobOut,
)
from api.scope import get_project_or_404, visible_project_ids
from api.strict_query import StrictQuery
from models import sftp_access, sftp_jobs
from models.number_filters import FILTER_NAMES, filters_as_params
from models.sftp_layout import export_path, export_stem
from models.tables import Project, Provider, SftpJob

router = APIRouter(prefix="/api/sftp", tags=["sftp"], dependencies=[StrictQuery])

ORDERING = {
    "id": SftpJob.id,
    "created_at": SftpJob.created_at,
    "updated_at": SftpJob.updated_at,
    "started_at": SftpJob.started_at,
    "completed_at": SftpJob.completed_at,
    "status": SftpJob.status,
    "job_type": SftpJob.job_type,
    "project_id": SftpJob.project_id,
    "records_count": SftpJob.records_count,
}
AUDITED = ("job_type", "project_id", "provider_id", "file_name", "file_path", "params")


def job_visible(user: CurrentUser) -> ColumnElement[bool]:
    cond = SftpJob.project_id.in_(visible_project_ids(user))
    return or_(cond, SftpJob.project_id.is_(None)) if user.is_admin else cond


def _provider_or_400(session: Session, field: str, **where: Any) -> Provider:
    """The provider named by id or folder code; whether it may deliver to the project is
    sftp_access.import_refusal's call (the rule the inbox obeys too)."""
    provider = session.scalar(select(Provider).filter_by(**where))
    if provider is None:
        what = f"code {where['code']!r}" if "code" in where else str(where.get("id"))
        raise FieldError(field, f"Provider {what} does not exist.")
    return provider


def _check_import(session: Session, body: ImportRequest, project: Project) -> int | None:
    """The path's folders must name this project (and provider): a manager cannot pull another
    project's delivery into theirs. Returns the provider id (given, or from the folder)."""
    parts = body.file_path.split("/")
    if parts[1] != project.code:
        raise FieldError(
            "file_path",
            f"Files for project {project.code!r} are imported from inbox/{project.code}/, "
            f"not inbox/{parts[1]}/.",
        )
    provider = None
    if body.provider_id is not None:
        provider = _provider_or_400(session, "provider_id", id=body.provider_id)
    if len(parts) == 4:
        folder = parts[2]
        if provider is None:
            provider = _provider_or_400(session, "file_path", code=folder)
        elif provider.code != folder:
            raise FieldError(
                "provider_id",
                f"Provider {provider.id} has code {provider.code!r}, but the file is in the "
                f"folder of provider {folder!r}.",
            )
    return provider.id if provider else None


def _conn(session: Session) -> psycopg.Connection:
    """The session's own connection: the lifecycle's rows commit with the audit row."""
    return session.connection().connection.driver_connection  # type: ignore[return-value]


def _requested(session: Session, job_id: int, user: CurrentUser, client: ClientDep) -> SftpJob:
    job = session.get(SftpJob, job_id)
    assert job is not None
    audit.record(
        session,
        action=f"sftp_{job.job_type}.requested",
        user=user,
        entity_type="sftp_job",
        entity_id=job.id,
        changes=audit.created(job, AUDITED),
        client=client,
    )
    session.commit()
    session.refresh(job)
    return job


@router.post(
    "/import/",
    response_model=SftpJobOut,
    status_code=202,
    summary="Request an import of a file on the SFTP server (a pending job)",
    responses={409: {"description": "Another job is already importing this file."}},
)
def request_import(
    body: ImportRequest, session: SessionDep, user: UserDep, client: ClientDep
) -> SftpJob:
    # The project row lock serialises requests, so the duplicate check below cannot race.
    project = get_project_or_404(session, user, body.project_id, for_update=True)
    provider_id = _check_import(session, body, project)
    conn = _conn(session)
    refusal = sftp_access.import_refusal(conn, project.id, provider_id)
    if refusal is not None:
        field = "provider_id" if body.provider_id is not None else "file_path"
        raise FieldError(field, refusal[0].upper() + refusal[1:] + ".")
    busy = sftp_jobs.active_import(conn, body.file_path)
    if busy is not None:
        raise conflict(f"Job {busy} is already importing {body.file_path}.")
    job_id = sftp_jobs.create_job(
        conn,
        job_type="import",
        project_id=project.id,
        provider_id=provider_id,
        file_path=body.file_path,
        params={"source": "api", "column_map": body.column_map or {}},
        requested_by=user.id,
    )
    return _requested(session, job_id, user, client)


@router.post(
    "/export/",
    response_model=SftpJobOut,
    status_code=202,
    summary="Request a CSV export of a project's numbers to outbox/<project code>/ (a pending job)",
    responses={409: {"description": "The file name is taken by another export of the project."}},
)
def request_export(
    body: ExportRequest,
    session: SessionDep,
    user: UserDep,
    settings: SettingsDep,
    client: ClientDep,
) -> SftpJob:
    # The project row lock serialises this project's requests: two cannot take one name.
    project = get_project_or_404(session, user, body.project_id, for_update=True)
    unknown = sorted(set(body.filters) - FILTER_NAMES)
    if unknown:
        hint = f"Unknown filter; allowed: {', '.join(sorted(FILTER_NAMES))}."
        raise FieldError({f"filters.{name}": [hint] for name in unknown})
    filters = parse_filters(body.filters, settings.phone_region, prefix="filters.")
    if filters.project_id not in (None, project.id):
        raise FieldError("filters.project_id", "Must be the job's project_id (or left out).")
    filters = replace(filters, project_id=project.id)
    conn = _conn(session)
    if body.file_name is not None:
        path = export_path(project.code, body.file_name.removesuffix(".csv"))
        holder = sftp_jobs.export_holding(conn, path)
        if holder is not None:
            raise conflict(
                f"Job {holder} already exports to {path}; a completed export is never "
                "overwritten. Choose another file_name."
            )
    job_id = sftp_jobs.create_job(
        conn,
        job_type="export",
        project_id=project.id,
        params={"source": "api", "filters": filters_as_params(filters)},
        requested_by=user.id,
    )
    stem = export_stem(body.file_name, project.code, job_id)  # the default name needs the id
    sftp_jobs.name_export(conn, job_id, stem, export_path(project.code, stem))
    return _requested(session, job_id, user, client)


@router.get("/jobs/", response_model=Page[SftpJobOut], summary="List SFTP jobs in scope")
def list_jobs(
    request: Request,
    session: SessionDep,
    user: UserDep,
    page: PageDep,
    job_type: Annotated[JobType | None, Query()] = None,
    status: Annotated[JobStatus | None, Query()] = None,
    project_id: IdQuery = None,
    created_after: CreatedAfter = None,
    created_before: CreatedBefore = None,
    ordering: Ordering = None,
) -> dict[str, Any]:
    stmt = select(SftpJob).where(job_visible(user))
    if project_id is not None:
        get_project_or_404(session, user, project_id)
        stmt = stmt.where(SftpJob.project_id == project_id)
    if job_type is not None:
        stmt = stmt.where(SftpJob.job_type == job_type)
    if status is not None:
        stmt = stmt.where(SftpJob.status == status)
    if created_after is not None:
        stmt = stmt.where(SftpJob.created_at >= created_after)
    if created_before is not None:
        stmt = stmt.where(SftpJob.created_at < created_before)
    stmt = apply_ordering(stmt, ordering, ORDERING, default=("-id",), tiebreak=SftpJob.id)
    return paginate(session, stmt, page, request, SftpJobOut.model_validate)


@router.get("/jobs/{job_id}/", response_model=SftpJobOut, summary="One SFTP job")
def read_job(job_id: IdPath, session: SessionDep, user: UserDep) -> SftpJob:
    job = session.scalar(select(SftpJob).where(SftpJob.id == job_id, job_visible(user)))
    if job is None:
        raise not_found("Job not found.")
    return job
