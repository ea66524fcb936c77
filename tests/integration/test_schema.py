"""Each constraint of the schema refuses what it must, and the data layer keeps timestamps."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from models.tables import Project, ProjectSchedule


def _fails(engine: Engine, sql: str, params: dict[str, object], constraint: str) -> None:
    with pytest.raises(IntegrityError) as err, engine.begin() as conn:
        conn.execute(text(sql), params)
    assert constraint in str(err.value)


def test_duplicate_number_in_project_refused_but_allowed_across_projects(factory, db) -> None:
    p1, p2 = factory.project(), factory.project()
    factory.number(p1, "+79161234567")
    factory.number(p2, "+79161234567")  # same number, other project: fine
    _fails(
        db,
        "INSERT INTO phone_numbers (phone_number, project_id) VALUES (:p, :pid)",
        {"p": "+79161234567", "pid": p1.id},
        "uq_phone_numbers_phone_project",
    )
    with db.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM phone_numbers")) == 2


@pytest.mark.parametrize(
    ("table", "column", "bad", "constraint"),
    [
        ("phone_numbers", "status", "called", "ck_phone_numbers_status"),
        ("projects", "status", "archived", "ck_projects_status"),
        ("users", "role", "root", "ck_users_role"),
        ("providers", "status", "gone", "ck_providers_status"),
        ("sftp_jobs", "status", "done", "ck_sftp_jobs_status"),
        ("sftp_jobs", "job_type", "sync", "ck_sftp_jobs_job_type"),
    ],
)
def test_bad_status_refused(factory, db, table, column, bad, constraint) -> None:
    project = factory.project()
    user = factory.user()
    provider = factory.provider()
    row = {
        "phone_numbers": (
            "INSERT INTO phone_numbers (phone_number, project_id, status) VALUES "
            "('+79160000001', :pid, :bad)"
        ),
        "projects": "INSERT INTO projects (code, name, status) VALUES ('zz', 'Z', :bad)",
        "users": (
            "INSERT INTO users (username, email, password_hash, role) "
            "VALUES ('u', 'u@x.io', 'h', :bad)"
        ),
        "providers": "INSERT INTO providers (code, name, status) VALUES ('pp', 'P', :bad)",
        "sftp_jobs": (
            "INSERT INTO sftp_jobs (job_type, status) VALUES "
            + ("('import', :bad)" if column == "status" else "(:bad, 'pending')")
        ),
    }[table]
    params: dict[str, object] = {"bad": bad}
    if ":pid" in row:
        params["pid"] = project.id
    _fails(db, row, params, constraint)
    assert user.id and provider.id


@pytest.mark.parametrize(("start", "end"), [("10:00", "10:00"), ("18:00", "09:00")])
def test_schedule_window_must_be_ordered(factory, session, start, end) -> None:
    project = factory.project()
    session.add(
        ProjectSchedule(
            project_id=project.id,
            weekday=1,
            start_time=dt.time.fromisoformat(start),
            end_time=dt.time.fromisoformat(end),
        )
    )
    with pytest.raises(IntegrityError, match="ck_project_schedules_time_window"):
        session.commit()


@pytest.mark.parametrize("weekday", [-1, 7])
def test_schedule_weekday_range(factory, db, weekday) -> None:
    project = factory.project()
    _fails(
        db,
        "INSERT INTO project_schedules (project_id, weekday, start_time, end_time) "
        "VALUES (:pid, :wd, '09:00', '10:00')",
        {"pid": project.id, "wd": weekday},
        "ck_project_schedules_weekday",
    )


@pytest.mark.parametrize("rate", [-0.01, 100.01])
def test_conversion_rate_range(factory, db, rate) -> None:
    project = factory.project()
    _fails(
        db,
        "INSERT INTO project_conversions (project_id, conversion_rate) VALUES (:pid, :r)",
        {"pid": project.id, "r": rate},
        "ck_project_conversions_conversion_rate",
    )


def test_conversion_snapshot_unique_per_time(factory, db) -> None:
    project = factory.project()
    sql = "INSERT INTO project_conversions (project_id, calculated_at) VALUES (:pid, :at)"
    at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    with db.begin() as conn:
        conn.execute(text(sql), {"pid": project.id, "at": at})
    _fails(
        db, sql, {"pid": project.id, "at": at}, "uq_project_conversions_project_id_calculated_at"
    )


def test_number_must_be_e164(factory, db) -> None:
    project = factory.project()
    _fails(
        db,
        "INSERT INTO phone_numbers (phone_number, project_id) VALUES ('89161234567', :pid)",
        {"pid": project.id},
        "ck_phone_numbers_e164",
    )


def test_project_code_unique_and_slug(factory, db) -> None:
    factory.project(code="spring-sale")
    _fails(
        db,
        "INSERT INTO projects (code, name) VALUES ('spring-sale', 'Again')",
        {},
        "uq_projects_code",
    )
    _fails(
        db,
        "INSERT INTO projects (code, name) VALUES ('Bad Code', 'X')",
        {},
        "ck_projects_code_slug",
    )


def test_soft_delete_state_is_consistent(factory, db) -> None:
    project = factory.project()
    _fails(
        db,
        "UPDATE projects SET is_deleted = true WHERE id = :id",
        {"id": project.id},
        "ck_projects_soft_delete",
    )
    with db.begin() as conn:
        conn.execute(
            text(
                "UPDATE projects SET is_deleted = true, deleted_at = now(), status = 'deleted' "
                "WHERE id = :id"
            ),
            {"id": project.id},
        )


def test_updated_at_kept_current_by_set_based_updates(factory, db) -> None:
    project = factory.project()
    number = factory.number(project)
    with db.begin() as conn:
        conn.execute(
            text("UPDATE phone_numbers SET status = 'success' WHERE id = :id"), {"id": number.id}
        )
        conn.execute(
            text("UPDATE projects SET name = 'Renamed' WHERE id = :id"), {"id": project.id}
        )
    with db.connect() as conn:
        n_created, n_updated = conn.execute(
            text("SELECT created_at, updated_at FROM phone_numbers WHERE id = :id"),
            {"id": number.id},
        ).one()
        p_updated = conn.scalar(
            text("SELECT updated_at FROM projects WHERE id = :id"), {"id": project.id}
        )
    assert n_updated > n_created
    assert p_updated > project.created_at
    assert n_created.tzinfo is not None  # timestamptz everywhere


def test_deleting_a_provider_keeps_its_numbers(factory, session, db) -> None:
    project, provider = factory.project(), factory.provider()
    number = factory.number(project, provider_id=provider.id)
    with db.begin() as conn:
        conn.execute(text("DELETE FROM providers WHERE id = :id"), {"id": provider.id})
    with db.connect() as conn:
        assert (
            conn.scalar(
                text("SELECT provider_id FROM phone_numbers WHERE id = :id"), {"id": number.id}
            )
            is None
        )
    assert session.get(Project, project.id) is not None
