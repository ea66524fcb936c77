"""The audit log (admin only): who did what to which entity, when, from where."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from sqlalchemy import select

from api.deps import AdminDep, SessionDep
from api.pagination import Page, PageDep, apply_ordering, paginate
from api.schemas.audit_log import AuditLogOut
from api.schemas.common import CreatedAfter, CreatedBefore, IdQuery, Ordering
from api.strict_query import StrictQuery
from models.tables import AuditLog

router = APIRouter(prefix="/api/audit-log", tags=["audit log"], dependencies=[StrictQuery])

ORDERING = {
    "id": AuditLog.id,
    "created_at": AuditLog.created_at,
    "action": AuditLog.action,
    "user_id": AuditLog.user_id,
    "entity_type": AuditLog.entity_type,
    "entity_id": AuditLog.entity_id,
}
_NAME = Query(max_length=100, pattern=r"^[^\x00]*$")


@router.get("/", response_model=Page[AuditLogOut], summary="Browse the audit log (admin)")
def list_audit_log(
    request: Request,
    session: SessionDep,
    _: AdminDep,
    page: PageDep,
    user_id: IdQuery = None,
    action: Annotated[str | None, _NAME] = None,
    entity_type: Annotated[str | None, _NAME] = None,
    entity_id: IdQuery = None,
    created_after: CreatedAfter = None,
    created_before: CreatedBefore = None,
    ordering: Ordering = None,
) -> dict[str, Any]:
    stmt = select(AuditLog)
    if user_id is not None:
        stmt = stmt.where(AuditLog.user_id == user_id)
    if action is not None:
        stmt = stmt.where(AuditLog.action == action)
    if entity_type is not None:
        stmt = stmt.where(AuditLog.entity_type == entity_type)
    if entity_id is not None:
        stmt = stmt.where(AuditLog.entity_id == entity_id)
    if created_after is not None:
        stmt = stmt.where(AuditLog.created_at >= created_after)
    if created_before is not None:
        stmt = stmt.where(AuditLog.created_at < created_before)
    # Newest first by default: that is what someone opening the log wants to see.
    stmt = apply_ordering(stmt, ordering, ORDERING, default=("-id",))
    return paginate(session, stmt, page, request, AuditLogOut.model_validate)
