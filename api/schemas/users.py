from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["admin", "manager"]
Username = Annotated[
    str,
    Field(
        min_length=1,
        max_length=150,
        pattern=r"^[A-Za-z0-9_.@+-]+$",
        description="letters, digits and _ . @ + -",
    ),
]
Email = Annotated[
    str,
    Field(max_length=255, pattern=r"^[^@\s\x00]+@[^@\s\x00]+\.[^@\s\x00]+$"),
]
Password = Annotated[
    str, Field(min_length=8, max_length=1024, pattern=r"^[^\x00]*$", description="8+ chars")
]


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    email: str
    role: Role
    is_active: bool
    last_login_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # no coercion: "1" is not 1

    username: Username
    email: Email
    password: Password
    role: Role = "manager"
    is_active: bool = True


class UserReplace(BaseModel):
    """PUT: every updatable field; `password` stays optional (omitted = unchanged)."""

    model_config = ConfigDict(extra="forbid", strict=True)  # no coercion: "1" is not 1

    email: Email
    role: Role
    is_active: bool
    password: Password | None = None


class UserPatch(BaseModel):
    """PATCH: any subset. The username never changes (it is the login and the audit key)."""

    model_config = ConfigDict(extra="forbid", strict=True)  # no coercion: "1" is not 1

    email: Email = None  # type: ignore[assignment]  # omitted = unchanged; null is refused
    role: Role = None  # type: ignore[assignment]
    is_active: bool = None  # type: ignore[assignment]
    password: Password = None  # type: ignore[assignment]
