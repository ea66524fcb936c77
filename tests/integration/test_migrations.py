"""Migrations build the schema from nothing, match the ORM tables, and go back down to base."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import inspect

from models import migrate
from models.db import make_engine
from models.tables import Base


@pytest.fixture
def empty_database(server_url: str) -> Iterator[str]:
    name = f"numbase_mig_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield server_url.rpartition("/")[0] + "/" + name
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def _tables(url: str) -> set[str]:
    engine = make_engine(url, pool_size=None)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_check_downgrade_roundtrip(empty_database: str) -> None:
    assert migrate.current_revision(empty_database) is None
    migrate.upgrade(empty_database)
    assert migrate.at_head(empty_database)
    expected = {t.name for t in Base.metadata.sorted_tables}
    assert expected <= _tables(empty_database)
    # The plan's eleven tables are all there.
    assert {
        "users", "projects", "providers", "geo", "phone_numbers", "project_providers",
        "project_geo", "project_schedules", "project_conversions", "sftp_jobs", "audit_log",
    } <= expected  # fmt: skip
    migrate.check(empty_database)  # raises on drift between tables.py and the migrations
    migrate.downgrade(empty_database)
    assert _tables(empty_database) <= {"alembic_version"}
    migrate.upgrade(empty_database)
    assert migrate.at_head(empty_database)


def test_server_is_postgresql_15_or_newer(server_url: str) -> None:
    with psycopg.connect(server_url) as conn:
        version = conn.execute("SHOW server_version_num").fetchone()
    assert version is not None and int(version[0]) >= 150000
