"""Housekeeping that keeps auth tables small: expired revoked tokens and old login failures."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Connection, delete, func

from models.tables import LoginFailure, RevokedToken


def prune_auth_tables(conn: Connection, *, failures_older_than: dt.timedelta) -> dict[str, int]:
    """Delete revoked tokens past their expiry (they fail the signature's `exp` check anyway)
    and login failures outside any throttling window. Returns the rows removed per table."""
    tokens = conn.execute(delete(RevokedToken).where(RevokedToken.expires_at < func.now()))
    failures = conn.execute(
        delete(LoginFailure).where(LoginFailure.attempted_at < func.now() - failures_older_than)
    )
    return {"revoked_tokens": tokens.rowcount or 0, "login_failures": failures.rowcount or 0}
