"""Test harness: one real PostgreSQL per session, the schema built through the migrations,
each test isolated by truncating what it wrote.

Default: an embedded server in .numbase/test-pg (fsync off). With NUMBASE_TEST_DATABASE_URL set,
a fresh database is created on that server for the session and dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from models import migrate
from models.db import make_engine
from models.tables import Base

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def _test_server() -> Iterator[str]:
    """The server under test; an embedded one started here is stopped when the session ends."""
    external = os.environ.get("NUMBASE_TEST_DATABASE_URL")
    if external:
        yield external
        return
    from models.embedded import TEST_SETTINGS, EmbeddedPostgres

    pgdata = ROOT / ".numbase" / "test-pg" / "pgdata"
    server = EmbeddedPostgres(pgdata, extra_settings=TEST_SETTINGS)
    was_running = server.running()
    url = server.start()
    try:
        yield url
    finally:
        if not was_running:
            server.stop()


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    with _test_server() as url:
        yield url


@pytest.fixture(scope="session")
def database_url(server_url: str) -> Iterator[str]:
    """A fresh database for this session, migrated to head."""
    name = f"numbase_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = _with_database(server_url, name)
    os.environ["NUMBASE_DATABASE_URL"] = url
    migrate.upgrade(url)
    yield url
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    eng = make_engine(database_url, pool_size=5)
    yield eng
    eng.dispose()


ALL_TABLES = ", ".join(t.name for t in Base.metadata.sorted_tables)


def truncate_all(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {ALL_TABLES} RESTART IDENTITY CASCADE"))


@pytest.fixture
def db(engine: Engine) -> Iterator[Engine]:
    """A clean database for one test (every table truncated afterwards)."""
    yield engine
    truncate_all(engine)


@pytest.fixture
def session(db: Engine) -> Iterator[Session]:
    with Session(db, expire_on_commit=False) as s:
        yield s


@pytest.fixture
def factory(session: Session):  # type: ignore[no-untyped-def]
    from tests.factories import Factory

    return Factory(session)


# Cheap argon2id parameters everywhere in-process (see tests/fasthash.py).
from tests.fasthash import cheap_argon2  # noqa: E402, F401
