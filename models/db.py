"""Engines and sessions on the one PostgreSQL both the API and Dagster use."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from models.settings import Settings, get_settings

APP_DATABASE = "numbase"


def sqlalchemy_url(url: str) -> str:
    """Any postgres URL, spelled for SQLAlchemy's psycopg 3 driver."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    raise ValueError(f"not a PostgreSQL URL: {url}")


def libpq_url(url: str) -> str:
    """The same URL for psycopg/libpq, dbt and Dagster (no SQLAlchemy driver suffix)."""
    return "postgresql://" + url.split("://", 1)[1]


def resolve_database_url(settings: Settings | None = None, *, start: bool = True) -> str:
    """The configured URL, or the embedded server's (started on demand) numbase database."""
    settings = settings or get_settings()
    if settings.database_url:
        return libpq_url(settings.database_url)
    from models.embedded import EmbeddedPostgres, ensure_database

    server = EmbeddedPostgres(settings.pgdata_dir)
    server_url = server.start() if start else server.url()
    return ensure_database(server_url, APP_DATABASE)


@contextmanager
def database_for_command(settings: Settings | None = None) -> Iterator[str]:
    """The database URL for a one-shot command; an embedded server started just for it is
    stopped afterwards, one that was already running (e.g. under `numbase up`) is left alone."""
    settings = settings or get_settings()
    if settings.database_url:
        yield libpq_url(settings.database_url)
        return
    from models.embedded import EmbeddedPostgres

    server = EmbeddedPostgres(settings.pgdata_dir)
    was_running = server.running()
    try:
        yield resolve_database_url(settings)
    finally:
        if not was_running:
            server.stop()


def make_engine(url: str, *, pool_size: int | None = 10, **kwargs: object) -> Engine:
    """pool_size=None means no pooling (one-shot tools: migrations, CLI)."""
    if pool_size is None:
        kwargs["poolclass"] = NullPool
    else:
        kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
    return create_engine(
        sqlalchemy_url(url),
        # psycopg auto-prepares after 5 runs and the generic plan can be thousands of times
        # slower for paging queries (STACK-NOTES): never switch to server-side prepares.
        connect_args={"prepare_threshold": None},
        **kwargs,  # type: ignore[arg-type]
    )


@lru_cache(maxsize=4)
def get_engine(url: str | None = None) -> Engine:
    settings = get_settings()
    return make_engine(url or resolve_database_url(settings), pool_size=settings.db_pool_size)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    session = Session(engine, expire_on_commit=False)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
