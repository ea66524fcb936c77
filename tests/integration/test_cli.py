"""The `numbase` CLI against the test database: create-user and db commands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
