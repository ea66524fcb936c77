"""Password hashing (argon2) and JWTs (pyjwt, HS256) with jti, exp, sub and role."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import jwt
from pwdlib import PasswordHash

from models.settings import Settings

ALGORITHM = "HS256"
TokenType = Literal["access", "refresh"]

_hasher = PasswordHash.recommended()  # argon2id
# Verifying against this keeps the timing of "no such user" close to "wrong password".
_DUMMY_HASH = _hasher.hash("numbase-timing-equaliser")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password: str, password_hash: str | None) -> bool:
    if password_hash is None:
        _hasher.verify(password, _DUMMY_HASH)
        return False
    try:
        return _hasher.verify(password, password_hash)
    except Exception:  # a malformed stored hash never authenticates
        return False


class TokenError(Exception):
    pass


@dataclass(frozen=True)
class TokenClaims:
    jti: str
    sub: int
    role: str
    type: TokenType
    exp: dt.datetime


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def issue_token(settings: Settings, user_id: int, role: str, token_type: TokenType) -> TokenClaims:
    ttl = (
        settings.jwt_access_ttl_seconds
        if token_type == "access"
        else settings.jwt_refresh_ttl_seconds
    )
    now = _now()
    return TokenClaims(
        jti=uuid.uuid4().hex,
        sub=user_id,
        role=role,
        type=token_type,
        exp=now + dt.timedelta(seconds=ttl),
    )


def encode(settings: Settings, claims: TokenClaims) -> str:
    payload: dict[str, Any] = {
        "jti": claims.jti,
        "sub": str(claims.sub),
        "role": claims.role,
        "type": claims.type,
        "iat": int(_now().timestamp()),
        "exp": int(claims.exp.timestamp()),
    }
    return jwt.encode(payload, settings.resolved_jwt_secret(), algorithm=ALGORITHM)


def decode(settings: Settings, token: str, expected: TokenType) -> TokenClaims:
    try:
        payload = jwt.decode(
            token,
            settings.resolved_jwt_secret(),
            algorithms=[ALGORITHM],
            options={"require": ["jti", "sub", "exp", "type"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenError("Token has expired.") from exc
    except jwt.PyJWTError as exc:
        raise TokenError("Invalid token.") from exc
    if payload.get("type") != expected:
        raise TokenError(
            f"Not an {expected} token." if expected == "access" else "Not a refresh token."
        )
    try:
        sub = int(payload["sub"])
    except (TypeError, ValueError) as exc:
        raise TokenError("Invalid token.") from exc
    return TokenClaims(
        jti=str(payload["jti"]),
        sub=sub,
        role=str(payload.get("role", "")),
        type=expected,
        exp=dt.datetime.fromtimestamp(int(payload["exp"]), dt.UTC),
    )
