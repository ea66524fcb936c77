"""Audit rows, written in the same transaction as the change they describe."""

from __future__ import annotations

import datetime as dt
import decimal
import ipaddress
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy.orm import Session

from api.deps import ClientInfo, CurrentUser
from models.tables import AuditLog

# Never written into `changes`, whatever the caller passes.
SECRET_FIELDS = frozenset({"password", "password_hash", "token", "refresh", "secret"})


def _json_safe(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_json_safe(v) for v in value]
    return value


def _ip(value: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address(value)) if value else None
    except ValueError:  # e.g. a test client's symbolic host
        return None


def snapshot(obj: Any, fields: Iterable[str]) -> dict[str, Any]:
    return {f: getattr(obj, f) for f in fields}


def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, list[Any]]:
    """{field: [old, new]} for the fields that changed, secrets left out."""
    changes: dict[str, list[Any]] = {}
    for field in after:
        if field in SECRET_FIELDS:
            continue
        old, new = before.get(field), after[field]
        if old != new:
            changes[field] = [_json_safe(old), _json_safe(new)]
    return changes


def created(obj: Any, fields: Iterable[str]) -> dict[str, list[Any]]:
    return diff({}, {f: v for f, v in snapshot(obj, fields).items() if v is not None})


def record(
    session: Session,
    *,
    action: str,
    user: CurrentUser | None = None,
    user_id: int | None = None,
    actor: str | None = None,
    entity_type: str | None = None,
    entity_id: int | None = None,
    changes: Mapping[str, Any] | None = None,
    client: ClientInfo | None = None,
) -> AuditLog:
    """Add an audit row to the session; it commits (or rolls back) with the change itself."""
    row = AuditLog(
        user_id=user.id if user else user_id,
        actor=actor,
        action=action,
        entity_type=entity_type,
        entity_id=entity_id,
        changes=_json_safe(dict(changes)) if changes else None,
        ip_address=_ip(client.ip) if client else None,
        user_agent=client.user_agent if client else None,
    )
    session.add(row)
    return row
