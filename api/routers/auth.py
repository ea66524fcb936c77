"""Login, refresh rotation, logout, self-service password change and the current user.

Revocation lives in PostgreSQL, so it holds across restarts and replicas: by jti (one token), by
family (every token rotated from one login: a session) and by the user's token epoch (every
session issued before a password change or deactivation; see models/tables.py, User). Logins
and password changes go through the throttle of api/login_throttle.py; passwords are verified
with no database connection held (docs/security.md)."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, HTTPException, Response
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from api import audit, login_throttle
from api.deps import ClientDep, SessionDep, SettingsDep, UserDep, unauthorized
from api.errors import FieldError
from api.schemas.auth import LoginIn, LogoutIn, Me, PasswordChangeIn, RefreshIn, TokenPair
from api.security import (
    TokenClaims,
    TokenError,
    decode,
    encode,
    hash_password,
    issue_token,
    new_family,
    verify_password,
)
from models.settings import Settings
from models.tables import RevokedToken, User

router = APIRouter(prefix="/api/auth", tags=["auth"])

# Marks a password change in the audit log without storing anything derived from it.
PASSWORD_CHANGED = {"password": ["***", "***"]}


def _pair(settings: Settings, user_id: int, role: str, epoch: int, family: str) -> TokenPair:
    access = issue_token(settings, user_id, role, "access", epoch=epoch, family=family)
    refresh = issue_token(settings, user_id, role, "refresh", epoch=epoch, family=family)
    return TokenPair(
        access=encode(settings, access),
        refresh=encode(settings, refresh),
        access_expires_at=access.exp,
        refresh_expires_at=refresh.exp,
    )


def _revoke(session: Session, claims: TokenClaims) -> bool:
    """Revoke a token; False if it already was (a reused refresh token)."""
    inserted = session.execute(
        insert(RevokedToken)
        .values(jti=claims.jti, user_id=claims.sub, token_type=claims.type, expires_at=claims.exp)
        .on_conflict_do_nothing(index_elements=[RevokedToken.jti])
        .returning(RevokedToken.jti)
    ).first()
    return inserted is not None


def _revoke_family(session: Session, settings: Settings, claims: TokenClaims) -> None:
    """End a session: every token of the family, issued before now, expires within a TTL."""
    ttl = max(settings.jwt_access_ttl_seconds, settings.jwt_refresh_ttl_seconds)
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=ttl)
    session.execute(
        insert(RevokedToken)
        .values(jti=claims.family, user_id=claims.sub, token_type="family", expires_at=expires)
        .on_conflict_do_nothing(index_elements=[RevokedToken.jti])
    )


@router.post(
    "/login/",
    response_model=TokenPair,
    summary="Log in: username + password -> JWTs",
    responses={429: {"description": "throttled; `Retry-After` says when to try again"}},
)
def login(
    body: LoginIn, session: SessionDep, settings: SettingsDep, client: ClientDep
) -> TokenPair:
    ip = audit._ip(client.ip)
    user = session.execute(
        select(
            User.id,
            User.password_hash,
            User.is_active,
            User.token_epoch,
            login_throttle.is_known(ip).label("known"),
        ).where(User.username == body.username)
    ).one_or_none()
    reservation = login_throttle.reserve(
        session, settings, body.username, ip, known=bool(user and user.known)
    )
    session.commit()  # the attempt is counted; no connection is held while argon2 runs
    ok = verify_password(body.password, user.password_hash if user else None)
    if ok and user is not None and user.is_active:
        # Unless the password or the active flag changed while it was being checked.
        row = session.execute(
            update(User)
            .where(User.id == user.id, User.token_epoch == user.token_epoch, User.is_active)
            .values(last_login_at=func.now(), known_addresses=login_throttle.remember_address(ip))
            .returning(User.role, User.token_epoch)
        ).one_or_none()
        if row is not None:
            login_throttle.refund(session, reservation)
            audit.record(
                session,
                action="login",
                user_id=user.id,
                entity_type="user",
                entity_id=user.id,
                client=client,
            )
            pair = _pair(settings, user.id, row.role, row.token_epoch, new_family())
            session.commit()
            return pair
    audit.record(
        session,
        action="login_failed",
        user_id=user.id if user else None,
        entity_type="user",
        entity_id=user.id if user else None,
        changes={"username": [None, body.username]},
        client=client,
    )
    session.commit()
    raise unauthorized("Invalid username or password.")


@router.post("/refresh/", response_model=TokenPair, summary="Rotate a refresh token")
def refresh(body: RefreshIn, session: SessionDep, settings: SettingsDep) -> TokenPair:
    """A new pair of the same session. Presenting a refresh token a second time (one already
    rotated: it was stolen, or replayed) ends the whole session, the thief's tokens included."""
    try:
        claims = decode(settings, body.refresh, "refresh")
    except TokenError as exc:
        raise unauthorized(str(exc)) from exc
    user = session.execute(
        select(User.role, User.is_active, User.token_epoch).where(User.id == claims.sub)
    ).one_or_none()
    if user is None or not user.is_active:
        raise unauthorized("User is inactive or does not exist.")
    if user.token_epoch != claims.epoch:
        raise unauthorized("Session ended by a password change or deactivation; log in again.")
    if session.get(RevokedToken, claims.family) is not None:
        raise unauthorized("Session has been ended; log in again.")
    if not _revoke(session, claims):
        _revoke_family(session, settings, claims)
        session.commit()
        raise unauthorized(
            "Refresh token has already been used or revoked; its session has been ended."
        )
    pair = _pair(settings, claims.sub, user.role, user.token_epoch, claims.family)
    session.commit()
    return pair


@router.post("/logout/", status_code=204, summary="End this session (every token of this login)")
def logout(
    user: UserDep,
    session: SessionDep,
    settings: SettingsDep,
    client: ClientDep,
    body: LogoutIn | None = None,
) -> Response:
    _revoke(session, user.claims)
    _revoke_family(session, settings, user.claims)
    if body and body.refresh:
        try:
            claims = decode(settings, body.refresh, "refresh")
        except TokenError as exc:
            raise HTTPException(status_code=400, detail=f"refresh: {exc}") from exc
        if claims.sub != user.id:
            raise HTTPException(status_code=400, detail="refresh: token belongs to another user.")
        _revoke(session, claims)
        _revoke_family(session, settings, claims)
    audit.record(
        session, action="logout", user=user, entity_type="user", entity_id=user.id, client=client
    )
    session.commit()
    return Response(status_code=204)


@router.post(
    "/password/",
    response_model=TokenPair,
    summary="Change your own password (ends every other session)",
    responses={
        400: {"description": "`current_password` is wrong or `new_password` is not acceptable"},
        429: {"description": "throttled like logins; `Retry-After` says when to try again"},
    },
)
def change_password(
    body: PasswordChangeIn,
    user: UserDep,
    session: SessionDep,
    settings: SettingsDep,
    client: ClientDep,
) -> TokenPair:
    """For every user. Every session issued before the change ends, this one included; the
    answer is a fresh pair for this client to carry on with."""
    if body.new_password == body.current_password:
        raise FieldError("new_password", "Must differ from the current password.")
    ip = audit._ip(client.ip)
    row = session.execute(
        select(User.password_hash, login_throttle.is_known(ip).label("known")).where(
            User.id == user.id
        )
    ).one()
    # Wrong guesses count like failed logins: a stolen access token is no password oracle.
    reservation = login_throttle.reserve(session, settings, user.username, ip, known=row.known)
    session.commit()
    if not verify_password(body.current_password, row.password_hash):
        audit.record(
            session,
            action="password_change_failed",
            user=user,
            entity_type="user",
            entity_id=user.id,
            client=client,
        )
        session.commit()
        raise FieldError("current_password", "Wrong password.")
    new_hash = hash_password(body.new_password)
    # The trigger on users bumps token_epoch: every earlier token stops working.
    changed = session.execute(
        update(User)
        .where(
            User.id == user.id,
            User.is_active,
            User.token_epoch == user.claims.epoch,
            User.password_hash == row.password_hash,
        )
        .values(password_hash=new_hash)
        .returning(User.role, User.token_epoch)
    ).one_or_none()
    if changed is None:  # changed or deactivated meanwhile: this session is over anyway
        session.rollback()
        raise unauthorized("Session ended by a password change or deactivation; log in again.")
    login_throttle.refund(session, reservation)
    audit.record(
        session,
        action="password_change",
        user=user,
        entity_type="user",
        entity_id=user.id,
        changes=PASSWORD_CHANGED,
        client=client,
    )
    pair = _pair(settings, user.id, changed.role, changed.token_epoch, new_family())
    session.commit()
    return pair


@router.get("/me/", response_model=Me, summary="The current user")
def me(user: UserDep, session: SessionDep) -> User:
    row = session.get(User, user.id)
    assert row is not None
    return row
