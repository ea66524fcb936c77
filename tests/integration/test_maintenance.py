"""Pruning removes only what can no longer matter."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select

from models.maintenance import prune_auth_tables
from models.tables import LoginFailure, RevokedToken


def test_prune_keeps_live_revocations_and_recent_failures(db, session) -> None:
    now = dt.datetime.now(dt.UTC)
    session.add_all(
        [
            RevokedToken(
                jti="expired", token_type="access", expires_at=now - dt.timedelta(minutes=1)
            ),
            RevokedToken(jti="live", token_type="refresh", expires_at=now + dt.timedelta(days=1)),
            LoginFailure(username="a", attempted_at=now - dt.timedelta(hours=2)),
            LoginFailure(username="b", attempted_at=now - dt.timedelta(minutes=1)),
        ]
    )
    session.commit()
    with db.begin() as conn:
        removed = prune_auth_tables(conn, failures_older_than=dt.timedelta(minutes=15))
    assert removed == {"revoked_tokens": 1, "login_failures": 1}
    assert session.scalars(select(RevokedToken.jti)).all() == ["live"]
    assert session.scalars(select(LoginFailure.username)).all() == ["b"]
    assert session.scalar(select(func.count()).select_from(RevokedToken)) == 1
