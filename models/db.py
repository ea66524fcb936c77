"""Engines and sessions on the one PostgreSQL both the API and Dagster use."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import psycopg
from psycopg import errors as pg_errors
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


# --- lock and statement timeouts ---------------------------------------------------------


def milliseconds(seconds: float) -> int:
    # PostgreSQL takes milliseconds; 0 means "no limit". A positive value never rounds to 0.
    return max(1, round(seconds * 1000)) if seconds > 0 else 0


@dataclass(frozen=True, slots=True)
class DbTimeouts:
    """Session defaults every connection of a long-running process starts with.

    Set at connect time (libpq `options`), so they cost no round trip per transaction; a
    transaction that needs another value uses SET LOCAL (the webhook's group commit does).
    Through a transaction pooler (`at_connect=False`, NUMBASE_DB_POOLED) no `options` are sent:
    pgbouncer refuses them, and a server connection outlives any one client anyway. The
    pooler's connect_query sets the defaults then (deploy/pgbouncer/pgbouncer.ini).
    """

    lock_seconds: float
    statement_seconds: float
    at_connect: bool = True

    def options(self) -> str:
        return (
            f"-c lock_timeout={milliseconds(self.lock_seconds)} "
            f"-c statement_timeout={milliseconds(self.statement_seconds)}"
        )

    def connect_args(self, existing: dict[str, Any] | None = None) -> dict[str, Any]:
        """psycopg.connect keyword arguments with these timeouts (kept: any other options)."""
        args = dict(existing or {})
        if not self.at_connect:
            return args
        args["options"] = f"{args.get('options', '')} {self.options()}".strip()
        return args


def db_timeouts(settings: Settings | None = None, *, bulk: bool = False) -> DbTimeouts:
    """The configured timeouts; `bulk` for loads and Dagster work (the longer statement limit)."""
    settings = settings or get_settings()
    statement = (
        settings.db_bulk_statement_timeout_seconds
        if bulk
        else settings.db_statement_timeout_seconds
    )
    return DbTimeouts(
        settings.db_lock_timeout_seconds, statement, at_connect=not settings.db_pooled
    )


LOCK_TIMEOUT_SETTING = "NUMBASE_DB_LOCK_TIMEOUT_SECONDS"
STATEMENT_TIMEOUT_SETTINGS = (
    "NUMBASE_DB_STATEMENT_TIMEOUT_SECONDS, "
    "or NUMBASE_DB_BULK_STATEMENT_TIMEOUT_SECONDS for bulk loads"
)
_RELATION = re.compile(r'relation "([^"]+)"')


def timeout_reason(
    exc: BaseException, relation: str | None = None, *, outcome: str = "nothing was changed"
) -> str | None:
    """What a lock or statement timeout waited for, in words; None for any other error.

    `exc` is a psycopg error or SQLAlchemy's wrapper of one. PostgreSQL names the relation of a
    row or index-tuple wait in the error context; a table-lock wait has no context, so the
    caller may say which table it was writing (`relation`).
    """
    orig = getattr(exc, "orig", None) or exc
    if isinstance(orig, pg_errors.LockNotAvailable):
        diag = getattr(orig, "diag", None)
        found = _RELATION.search(f"{getattr(diag, 'context', '') or ''} {orig}")
        name = found.group(1) if found else relation
        what = f"a lock on {name}" if name else "a lock"
        return (
            f"timed out waiting for {what} held by another transaction "
            f"(longer than {LOCK_TIMEOUT_SETTING}); {outcome}, retry later"
        )
    if isinstance(orig, pg_errors.QueryCanceled) and "statement timeout" in str(orig):
        return (
            f"the statement ran longer than the statement timeout ({STATEMENT_TIMEOUT_SETTINGS})"
            f" and was cancelled; {outcome}"
        )
    return None


def connect(
    url: str, *, application_name: str, timeouts: DbTimeouts | None = None, **kwargs: Any
) -> psycopg.Connection[Any]:
    """A plain psycopg connection (sensors, Dagster), with the timeouts given."""
    if timeouts is not None:
        kwargs = timeouts.connect_args(kwargs)
    kwargs.setdefault("prepare_threshold", NEVER_AUTO_PREPARE)  # see make_engine
    return psycopg.connect(url, application_name=application_name, **kwargs)


# psycopg's automatic-prepare threshold out of reach: runs of one statement on one connection.
NEVER_AUTO_PREPARE = 2**62


def make_engine(
    url: str,
    *,
    pool_size: int | None = 10,
    timeouts: DbTimeouts | None = None,
    prepares: bool = True,
    **kwargs: object,
) -> Engine:
    """pool_size=None means no pooling (one-shot tools: migrations, CLI).

    `timeouts`: lock and statement limits of every connection (the API passes the configured
    ones; one-shot tools such as migrations run without, an operator watching).
    """
    if pool_size is None:
        kwargs["poolclass"] = NullPool
    else:
        kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
    # psycopg auto-prepares after 5 runs and the generic plan can be thousands of times
    # slower for paging queries (STACK-NOTES): never prepare automatically. (Not None: that
    # would also refuse the explicit prepares of models/prepared.py.)
    # `prepares=False` (behind a transaction pooler, NUMBASE_DB_POOLED): no prepared statement at
    # all, models/prepared.py included (it follows the connection's setting).
    connect_args: dict[str, Any] = {"prepare_threshold": NEVER_AUTO_PREPARE if prepares else None}
    if timeouts is not None:
        connect_args = timeouts.connect_args(connect_args)
    return create_engine(
        sqlalchemy_url(url),
        connect_args=connect_args,
        **kwargs,  # type: ignore[arg-type]
    )


@lru_cache(maxsize=4)
def get_engine(url: str | None = None) -> Engine:
    settings = get_settings()
    return make_engine(
        url or resolve_database_url(settings),
        pool_size=settings.db_pool_size,
        timeouts=db_timeouts(settings),
        prepares=not settings.db_pooled,
    )


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
