from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.users import Password


class LoginIn(BaseModel):
    username: str = Field(min_length=1, max_length=150)
    password: str = Field(min_length=1, max_length=1024)


class RefreshIn(BaseModel):
    refresh: str = Field(min_length=1, max_length=4096)


class LogoutIn(BaseModel):
    refresh: str | None = Field(None, max_length=4096, description="also revoke this refresh token")


class PasswordChangeIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    current_password: str = Field(min_length=1, max_length=1024)
    new_password: Password


class TokenPair(BaseModel):
    access: str
    refresh: str
    token_type: str = "bearer"
    access_expires_at: dt.datetime
    refresh_expires_at: dt.datetime


class Me(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    email: str
    role: str
    is_active: bool
    last_login_at: dt.datetime | None
    created_at: dt.datetime
