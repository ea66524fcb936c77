"""Creating users from the command line (the first admin cannot be created through the API)."""

from __future__ import annotations

import re

from pwdlib import PasswordHash
from sqlalchemy import make_url, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from models import migrate
from models.db import libpq_url, make_engine
from models.tables import AuditLog, User

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MIN_PASSWORD = 8


class DatabaseNotReady(ValueError):
    """The database cannot take a user: unreachable, or its schema is missing or not at head."""


def shown_url(database_url: str) -> str:
    return make_url(libpq_url(database_url)).render_as_string(hide_password=True)


def require_schema(database_url: str) -> None:
    """Refuse, saying what to do, unless the database has numbase's schema at head: a fresh
    NUMBASE_DATA_DIR (or a typo in it) gives an empty embedded database, not an error."""
    where = shown_url(database_url)
    try:
        current = migrate.current_revision(database_url)
    except OperationalError as exc:
        reason = str(exc.orig or exc).strip().splitlines()[0]
        raise DatabaseNotReady(f"cannot connect to the database at {where}: {reason}") from None
    head = migrate.head_revision()
    if current is None:
        raise DatabaseNotReady(
            f"the database at {where} has no numbase schema: run `numbase db upgrade` "
            "(or `make up` once) with the same NUMBASE_DATA_DIR / NUMBASE_DATABASE_URL"
        )
    if current != head:
        raise DatabaseNotReady(
            f"the database at {where} is at schema revision {current}, this numbase expects "
            f"{head}: run `numbase db upgrade`"
        )


def create_user(database_url: str, username: str, password: str, role: str, email: str) -> int:
    if not username.strip() or len(username) > 150:
        raise ValueError("username must be 1-150 characters")
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"password must be at least {MIN_PASSWORD} characters")
    if not EMAIL.match(email):
        raise ValueError(f"not an email address: {email!r}")
    require_schema(database_url)
    engine = make_engine(database_url, pool_size=None)
    try:
        with Session(engine) as session, session.begin():
            clash = session.scalar(
                select(User.id).where((User.username == username) | (User.email == email))
            )
            if clash is not None:
                raise ValueError("a user with that username or email already exists")
            user = User(
                username=username,
                email=email,
                role=role,
                password_hash=PasswordHash.recommended().hash(password),
            )
            session.add(user)
            session.flush()
            session.add(
                AuditLog(
                    actor="system:cli",
                    action="create_user",
                    entity_type="user",
                    entity_id=user.id,
                    changes={"username": [None, username], "role": [None, role]},
                )
            )
            return user.id
    finally:
        engine.dispose()
