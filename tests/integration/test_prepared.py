"""models/prepared.py: the hot statements prepared on the connection, errors as from execute."""

from __future__ import annotations

import pytest
from sqlalchemy import Integer, bindparam, select, text
from sqlalchemy.exc import DBAPIError, OperationalError

from models.db import make_engine
from models.prepared import execute_prepared

STMT = select(bindparam("i", type_=Integer).label("i"))


def test_prepared_once_per_connection_and_rows_by_name(database_url: str) -> None:
    engine = make_engine(database_url, pool_size=1)
    try:
        with engine.connect() as conn:
            for i in range(8):
                assert execute_prepared(conn, STMT, {"i": i})[0].i == i
            n = conn.execute(text("SELECT count(*) FROM pg_prepared_statements")).scalar()
            assert n == 1
    finally:
        engine.dispose()


def test_without_prepares_runs_plainly(database_url: str) -> None:
    engine = make_engine(database_url, pool_size=1, prepares=False)
    try:
        with engine.connect() as conn:
            for i in range(8):
                assert execute_prepared(conn, STMT, {"i": i})[0].i == i
            n = conn.execute(text("SELECT count(*) FROM pg_prepared_statements")).scalar()
            assert n == 0
    finally:
        engine.dispose()


def test_errors_are_sqlalchemy_errors_and_writes_commit(database_url: str) -> None:
    engine = make_engine(database_url, pool_size=1)
    slow = select(text("pg_sleep(2)"))
    write = text("INSERT INTO prepared_probe VALUES (:v) RETURNING v")
    try:
        with engine.connect() as conn:
            conn.execute(text("CREATE TABLE IF NOT EXISTS prepared_probe (v int)"))
            conn.commit()
            conn.execute(text("SET statement_timeout = '50ms'"))
            with pytest.raises(OperationalError):  # psycopg's QueryCanceled, wrapped
                execute_prepared(conn, slow, {})
            conn.rollback()
            with pytest.raises(DBAPIError):
                execute_prepared(conn, write, {"v": "not a number"})
            conn.rollback()
        with engine.connect() as conn:  # a fresh transaction begun for the driver's statement
            assert execute_prepared(conn, write, {"v": 7})[0].v == 7
            conn.commit()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT v FROM prepared_probe")).scalars().all() == [7]
            conn.execute(text("DROP TABLE prepared_probe"))
            conn.commit()
    finally:
        engine.dispose()


def test_autocommit_read_asks_the_server_nothing_more(database_url: str, monkeypatch) -> None:
    # The pop-up's path: an autocommit connection, no BEGIN and no isolation-level query (which
    # SQLAlchemy answers with a SHOW and a ROLLBACK: two round trips per lookup).
    engine = make_engine(database_url, pool_size=1)

    def asked(*_: object) -> None:
        raise AssertionError("the isolation level was asked of the server")

    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            monkeypatch.setattr(conn.dialect, "get_isolation_level", asked)
            assert execute_prepared(conn, STMT, {"i": 1})[0].i == 1
            assert not conn.in_transaction()
            assert conn.connection.driver_connection.info.transaction_status.name == "IDLE"
    finally:
        engine.dispose()
