"""Server-side prepared statements for the few hot statements whose planning is their cost.

The agent's pop-up is one row lookup with a dozen joins and subqueries: PostgreSQL plans it in
~3 ms and runs it in ~0.3 ms. Prepared once per connection, a lookup costs ~0.3 ms of server CPU
instead of ~3.5 ms (measured on the 10M base, docs/benchmarks.md) - the pop-up's capacity.

Why not psycopg's automatic prepare: it applies to every statement, and a generic plan of a
paging query can be thousands of times slower (STACK-NOTES), so engines keep the automatic
threshold out of reach (models/db.py `NEVER_AUTO_PREPARE`) and only a statement run through here
is prepared. Only statements whose plan does not depend on the values belong here (point
lookups by a unique key). A transaction pooler (pgbouncer < 1.21, NUMBASE_DB_POOLED) cannot
carry prepared statements across its server connections: its engines are made without prepares
(`make_engine(prepares=False)`) and this then runs the statement plainly.

Errors come back as SQLAlchemy's DBAPIError subclasses, as from `Connection.execute`, so the
API's handlers (timeouts, lost connection) answer the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy import Connection
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Executable


@lru_cache(maxsize=64)
def _compiled(stmt: Executable, dialect: Dialect) -> tuple[str, dict[str, Any]]:
    compiled = stmt.compile(dialect=dialect)  # type: ignore[attr-defined]
    return str(compiled), dict(compiled.params)


def execute_prepared(
    conn: Connection, stmt: Executable, params: Mapping[str, Any], *, prepare: bool = True
) -> list[Any]:
    """The rows of `stmt` (attribute access by column name), prepared on this connection -
    unless `prepare` is False or the engine was made without prepares (a pooler)."""
    raw = conn.connection.driver_connection
    if not prepare or raw.prepare_threshold is None:  # type: ignore[union-attr]
        return list(conn.execute(stmt, dict(params)).all())
    sql, defaults = _compiled(stmt, conn.dialect)
    values = {**defaults, **params}
    # So the caller's commit() commits what runs on the driver connection. (The driver's own
    # flag, not Connection.get_isolation_level(): that asks the server, two round trips.)
    if not raw.autocommit and not conn.in_transaction():  # type: ignore[union-attr]
        conn.begin()
    try:
        with raw.cursor(row_factory=namedtuple_row) as cur:  # type: ignore[union-attr]
            cur.execute(sql, values, prepare=True)
            return cur.fetchall() if cur.description else []
    except psycopg.Error as exc:
        raise DBAPIError.instance(sql, values, exc, psycopg.Error, dialect=conn.dialect) from exc
