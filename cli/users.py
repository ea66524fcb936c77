"""Creating users from the command line (the first admin cannot be created through the API)."""

from __future__ import annotations

import re

from pwdlib import PasswordHash
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.db import make_engine
from models.tables import AuditLog, User

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MIN_PASSWORD = 8


def create_user(database_url: str, username: str, password: str, role: str, email: str) -> int:
    if not username.strip() or len(username) > 150:
        raise ValueError("username must be 1-150 characters")
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"password must be at least {MIN_PASSWORD} characters")
    if not EMAIL.match(email):
        raise ValueError(f"not an email address: {email!r}")
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
