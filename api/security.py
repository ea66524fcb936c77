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


# A token is a header line, not a document: anything longer is refused before decoding.
MAX_TOKEN_LENGTH = 4096
_MAX_ID = 2**63 - 1  # user ids are BIGINT
_MAX_EPOCH = 2**31 - 1  # users.token_epoch is INTEGER
# exp/iat outside what datetime can hold (e.g. 1e308) are not dates: refused, never a 500.
_MAX_TIMESTAMP = dt.datetime(9999, 1, 1, tzinfo=dt.UTC).timestamp()


@dataclass(frozen=True)
class TokenClaims:
    jti: str
    sub: int
    role: str
    type: TokenType
    exp: dt.datetime
    # The user's token epoch when issued: valid only while it is still the user's epoch.
    epoch: int
    # One id for every token descending from one login (refresh rotation keeps it).
    family: str


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_family() -> str:
    return uuid.uuid4().hex


def issue_token(
    settings: Settings,
    user_id: int,
    role: str,
    token_type: TokenType,
    *,
    epoch: int,
    family: str,
) -> TokenClaims:
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
        epoch=epoch,
        family=family,
    )


def encode(settings: Settings, claims: TokenClaims) -> str:
    payload: dict[str, Any] = {
        "jti": claims.jti,
        "sub": str(claims.sub),
        "role": claims.role,
        "type": claims.type,
        "epoch": claims.epoch,
        "fam": claims.family,
        "iat": int(_now().timestamp()),
        "exp": int(claims.exp.timestamp()),
    }
    return jwt.encode(payload, settings.resolved_jwt_secret(), algorithm=ALGORITHM)


def _token_id(payload: dict[str, Any], name: str) -> str:
    value = payload.get(name)
    if not isinstance(value, str) or not 0 < len(value) <= 64:
        raise TokenError("Invalid token.")
    return value


def _int_claim(payload: dict[str, Any], name: str, upper: int) -> int:
    value = payload.get(name)
    # bool is an int in Python, not in a token.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= upper:
        raise TokenError("Invalid token.")
    return value


def _timestamp(payload: dict[str, Any], name: str) -> float:
    value = payload.get(name)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 <= value < _MAX_TIMESTAMP  # also refuses NaN and infinities
    ):
        raise TokenError("Invalid token.")
    return float(value)


def decode(settings: Settings, token: str, expected: TokenType) -> TokenClaims:
    """The claims of a signed, unexpired token of the expected type; anything else, however
    malformed (a 10,000-deep header, exp 1e308, a list for a subject), is a TokenError."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenError("Invalid token.")
    try:
        payload = jwt.decode(
            token,
            settings.resolved_jwt_secret(),
            algorithms=[ALGORITHM],
            options={"require": ["jti", "sub", "exp", "type", "epoch", "fam"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenError("Token has expired.") from exc
    # PyJWT parses the header before checking the signature: a hostile one can raise more
    # than PyJWTError (RecursionError on deep nesting, OverflowError on huge numbers).
    except (jwt.PyJWTError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise TokenError("Invalid token.") from exc
    if not isinstance(payload, dict):
        raise TokenError("Invalid token.")
    if payload.get("type") != expected:
        raise TokenError(
            f"Not an {expected} token." if expected == "access" else "Not a refresh token."
        )
    sub = payload.get("sub")
    if not isinstance(sub, str) or not sub.isascii() or not sub.isdigit() or len(sub) > 19:
        raise TokenError("Invalid token.")
    if int(sub) > _MAX_ID:
        raise TokenError("Invalid token.")
    role = payload.get("role", "")
    if not isinstance(role, str):
        raise TokenError("Invalid token.")
    if "iat" in payload:
        _timestamp(payload, "iat")
    return TokenClaims(
        jti=_token_id(payload, "jti"),
        sub=int(sub),
        role=role,
        type=expected,
        exp=dt.datetime.fromtimestamp(_timestamp(payload, "exp"), dt.UTC),
        epoch=_int_claim(payload, "epoch", _MAX_EPOCH),
        family=_token_id(payload, "fam"),
    )
