"""The `numbase` CLI against the test database: create-user and db commands."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import select

from api.security import verify_password
from models.tables import AuditLog, User

ROOT = Path(__file__).resolve().parents[2]


def _cli(database_url: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBASE_")}
    env["NUMBASE_DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=ROOT, env=env, input=stdin, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_create_user_hashes_with_argon2_and_audits(database_url, session, db) -> None:
    args = ("create-user", "--username", "root", "--email", "root@example.com", "--role", "admin",
            "--password-stdin")  # fmt: skip
    proc = _cli(database_url, *args, stdin="a-strong-password\n")
    assert proc.returncode == 0, proc.stderr
    user = session.scalar(select(User).where(User.username == "root"))
    assert user is not None and user.role == "admin"
    assert user.password_hash.startswith("$argon2id$")
    assert verify_password("a-strong-password", user.password_hash)
    assert (
        session.scalar(select(AuditLog.action).where(AuditLog.entity_id == user.id))
        == "create_user"
    )
    again = _cli(database_url, *args, stdin="a-strong-password\n")
    assert again.returncode == 2 and "already exists" in again.stderr


def test_create_user_rejects_bad_input(database_url, session, db) -> None:
    short = _cli(database_url, "create-user", "--username", "x", "--email", "x@example.com",
                 "--password-stdin", stdin="short\n")  # fmt: skip
    assert short.returncode == 2 and "at least 8" in short.stderr
    bad_email = _cli(database_url, "create-user", "--username", "x", "--email", "nope",
                     "--password-stdin", stdin="long-enough-1\n")  # fmt: skip
    assert bad_email.returncode == 2 and "email" in bad_email.stderr
    bad_role = _cli(database_url, "create-user", "--username", "x", "--email", "x@example.com",
                    "--role", "god", "--password-stdin", stdin="long-enough-1\n")  # fmt: skip
    assert bad_role.returncode == 2
    assert session.scalar(select(User).where(User.username == "x")) is None


def test_db_current_reports_head(database_url) -> None:
    from models.migrate import head_revision

    proc = _cli(database_url, "db", "current")
    assert proc.returncode == 0 and proc.stdout.strip() == head_revision()


@pytest.fixture
def empty_database(server_url: str) -> Iterator[str]:
    """A database on the test server that nobody has migrated (a fresh NUMBASE_DATA_DIR's)."""
    name = f"numbase_empty_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield f"{server_url.rpartition('/')[0]}/{name}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


CREATE_ADMIN = ("create-user", "--username", "root", "--email", "root@example.com", "--role",
                "admin", "--password-stdin")  # fmt: skip


def test_create_user_on_an_unmigrated_database_says_what_to_do(empty_database) -> None:
    proc = _cli(empty_database, *CREATE_ADMIN, stdin="a-strong-password\n")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "has no numbase schema" in proc.stderr and "numbase db upgrade" in proc.stderr
    assert empty_database.rpartition("/")[2] in proc.stderr  # names the database it looked at
    with psycopg.connect(empty_database) as conn:  # and created nothing there
        assert (
            conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0]
            == 0
        )


def test_create_user_behind_head_or_unreachable_says_what_to_do(empty_database) -> None:
    with psycopg.connect(empty_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)")
        conn.execute("INSERT INTO alembic_version VALUES ('0000old')")
    behind = _cli(empty_database, *CREATE_ADMIN, stdin="a-strong-password\n")
    assert behind.returncode == 2 and "Traceback" not in behind.stderr
    assert "revision 0000old" in behind.stderr and "numbase db upgrade" in behind.stderr

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gone = _cli(f"postgresql://postgres:hunter2@127.0.0.1:{port}/x", *CREATE_ADMIN,
                stdin="a-strong-password\n")  # fmt: skip
    assert gone.returncode == 2 and "Traceback" not in gone.stderr
    assert "cannot connect" in gone.stderr and "hunter2" not in gone.stderr


def test_create_user_in_a_fresh_data_dir_names_the_folder() -> None:
    """The issue's case: the embedded PostgreSQL of another NUMBASE_DATA_DIR, never migrated.
    Not in tmp_path: as root the server runs as another user, and any pytest session starting
    meanwhile makes /tmp/pytest-of-root 0700 again (tests/e2e/test_up.py)."""
    with tempfile.TemporaryDirectory(prefix="numbase-cli-") as tmp:
        _create_user_in_fresh_data_dir(Path(tmp) / "elsewhere")


def _create_user_in_fresh_data_dir(data_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBASE_")}
    env["NUMBASE_DATA_DIR"] = str(data_dir)
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", *CREATE_ADMIN],
        cwd=ROOT, env=env, input="a-strong-password\n", capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "numbase db upgrade" in proc.stderr
    assert f"NUMBASE_DATA_DIR={data_dir.resolve()}" in proc.stderr
    # The server started just for the command is stopped again.
    assert not (data_dir / "pgdata" / "postmaster.pid").exists()


def test_first_admin_hint_repeats_until_a_user_exists(database_url, db, factory, capsys) -> None:
    """`numbase up` frames the hint and repeats it (Dagster's log scrolls it away) until the
    admin exists; then, or when the platform stops, it goes quiet."""
    import threading

    from cli.up import first_admin_hint, remind_first_admin
    from models.settings import load_settings

    hint = first_admin_hint(load_settings(database_url=database_url), [])
    assert hint.splitlines()[0] == hint.splitlines()[-1] == "numbase: " + "=" * 72
    assert "create-user --username admin" in hint

    stop = threading.Event()
    reminder = threading.Thread(
        target=remind_first_admin, args=(database_url, hint, stop, 0.05, 0.05)
    )
    reminder.start()
    deadline = time.monotonic() + 30
    seen = ""
    while seen.count("no users yet") < 2:
        assert time.monotonic() < deadline, f"the hint was not repeated: {seen!r}"
        time.sleep(0.05)
        seen += capsys.readouterr().out
    factory.user(role="admin")
    reminder.join(30)
    assert not reminder.is_alive(), "still reminding after the first user was created"
    capsys.readouterr()
    time.sleep(0.2)
    assert capsys.readouterr().out == ""

    stopped = threading.Thread(target=remind_first_admin, args=(database_url, hint, stop, 0, 0))
    stopped.start()  # stop is already set: ends at once, prints nothing
    stopped.join(5)
    assert not stopped.is_alive()


def test_first_admin_hint_names_a_non_default_data_dir(tmp_path, monkeypatch) -> None:
    from cli.up import first_admin_hint
    from models.settings import load_settings

    monkeypatch.setenv("NUMBASE_DATA_DIR", str(tmp_path / "elsewhere"))
    hint = first_admin_hint(load_settings(data_dir=tmp_path / "elsewhere", database_url=None), [])
    assert f"NUMBASE_DATA_DIR={(tmp_path / 'elsewhere').resolve()} " in hint
