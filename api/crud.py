"""Small helpers routers share: apply a validated change set to a row and audit it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy.orm import Session

from api import audit
from api.deps import ClientInfo, CurrentUser


def apply_update(
    session: Session,
    obj: Any,
    data: Mapping[str, Any],
    *,
    user: CurrentUser,
    client: ClientInfo,
    entity_type: str,
    action: str = "update",
    extra_changes: Mapping[str, list[Any]] | None = None,
) -> dict[str, list[Any]]:
    """Set `data` on `obj`, flush, and write one audit row with the fields that really changed.
    A no-op update writes no row (the audit log records changes, not requests)."""
    before = audit.snapshot(obj, data.keys())
    for field, value in data.items():
        setattr(obj, field, value)
    changes = audit.diff(before, data)
    changes.update(extra_changes or {})
    if changes:
        session.flush()
        audit.record(
            session,
            action=action,
            user=user,
            entity_type=entity_type,
            entity_id=obj.id,
            changes=changes,
            client=client,
        )
    return changes


def insert_audited(
    session: Session,
    obj: Any,
    fields: Iterable[str],
    *,
    user: CurrentUser,
    client: ClientInfo,
    entity_type: str,
) -> Any:
    """Insert `obj` and its 'create' audit row (fields as [null, value])."""
    session.add(obj)
    session.flush()
    audit.record(
        session,
        action="create",
        user=user,
        entity_type=entity_type,
        entity_id=obj.id,
        changes=audit.created(obj, fields),
        client=client,
    )
    return obj


def commit_and_refresh(session: Session, obj: Any) -> Any:
    """Commit, then reload server-set columns (updated_at from the trigger)."""
    session.commit()
    session.refresh(obj)
    return obj
