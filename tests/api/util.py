"""Helpers for API tests: audit rows and table snapshots read straight from PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select, text

from models.tables import AuditLog

# Audit actions the auth fixtures write when they log users in.
AUTH_ACTIONS = ("login", "login_failed", "logout")


def audit_rows(engine: Engine, **where: Any) -> list[AuditLog]:
    """Audit rows other than logins, oldest first."""
    from sqlalchemy.orm import Session

    stmt = select(AuditLog).where(AuditLog.action.not_in(AUTH_ACTIONS)).order_by(AuditLog.id)
    for field, value in where.items():
        stmt = stmt.where(getattr(AuditLog, field) == value)
    with Session(engine) as s:
        return list(s.scalars(stmt).all())


def table_state(engine: Engine, *tables: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the given tables (for 'nothing changed' assertions)."""
    with engine.connect() as conn:
        return {
            t: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {t} ORDER BY 1"))]
            for t in tables
        }


def only_audit(engine: Engine) -> AuditLog:
    rows = audit_rows(engine)
    assert len(rows) == 1, [(r.action, r.entity_type, r.changes) for r in rows]
    return rows[0]
