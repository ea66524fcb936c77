"""The daily housekeeping job, run for real through Dagster."""

from __future__ import annotations

import datetime as dt

from dagster import DefaultScheduleStatus
from sqlalchemy import select

from models.tables import LoginFailure, RevokedToken
from orchestration.definitions import defs
from orchestration.maintenance import auth_housekeeping_job


def test_housekeeping_job_prunes_and_is_scheduled(db, session, postgres_resource) -> None:
    now = dt.datetime.now(dt.UTC)
    session.add_all(
        [
            RevokedToken(jti="old", token_type="access", expires_at=now - dt.timedelta(hours=1)),
            RevokedToken(jti="live", token_type="refresh", expires_at=now + dt.timedelta(days=1)),
            LoginFailure(username="x", attempted_at=now - dt.timedelta(days=1)),
        ]
    )
    session.commit()
    result = auth_housekeeping_job.execute_in_process(resources={"postgres": postgres_resource})
    assert result.success
    assert result.output_for_node("prune_auth_tables_op") == {
        "revoked_tokens": 1,
        "login_failures": 1,
    }
    assert session.scalars(select(RevokedToken.jti)).all() == ["live"]
    schedule = defs.get_schedule_def("auth_housekeeping_job_schedule")
    assert schedule.cron_schedule == "17 3 * * *"
    # On without anyone switching it on in the UI (docs/operations.md promises a daily run).
    assert schedule.default_status == DefaultScheduleStatus.RUNNING
