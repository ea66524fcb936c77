"""Login, refresh rotation, logout (revocation in PostgreSQL, so it holds across restarts and
replicas) and the current user. Failed logins are throttled per username and per address."""

from __future__ import annotations

import datetime as dt
import math

from fastapi import APIRouter, HTTPException, Response
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert

from api import audit
from api.deps import ClientDep, SessionDep, SettingsDep, UserDep, unauthorized
from api.schemas.auth import LoginIn, LogoutIn, Me, RefreshIn, TokenPair
from api.security import TokenClaims, TokenError, decode, encode, issue_token, verify_password
from models.settings import Settings
from models.tables import LoginFailure, RevokedToken, User

router = APIRouter(prefix="/api/auth", tags=["auth"])


def _pair(settings: Settings, user: User) -> TokenPair:
    access = issue_token(settings, user.id, user.role, "access")
    refresh = issue_token(settings, user.id, user.role, "refresh")
    return TokenPair(
        access=encode(settings, access),
        refresh=encode(settings, refresh),
        access_expires_at=access.exp,
        refresh_expires_at=refresh.exp,
    )


def _revoke(session: SessionDep, claims: TokenClaims) -> bool:
    """Revoke a token; False if it already was (a reused refresh token)."""
    inserted = session.execute(
        insert(RevokedToken)
        .values(jti=claims.jti, user_id=claims.sub, token_type=claims.type, expires_at=claims.exp)
        .on_conflict_do_nothing(index_elements=[RevokedToken.jti])
        .returning(RevokedToken.jti)
    ).first()
    return inserted is not None


def _throttle(session: SessionDep, settings: Settings, username: str, ip: str | None) -> None:
    window_start = func.now() - dt.timedelta(seconds=settings.login_window_seconds)
    key = LoginFailure.username == username
    if ip:
        key = or_(key, LoginFailure.ip_address == ip)
    failures, oldest = session.execute(
        select(func.count(), func.min(LoginFailure.attempted_at)).where(
            key, LoginFailure.attempted_at > window_start
        )
    ).one()
    if failures >= settings.login_max_failures:
        now = session.scalar(select(func.now()))
        retry = settings.login_window_seconds - (now - oldest).total_seconds()
        raise HTTPException(
            status_code=429,
            detail="Too many failed logins; try again later.",
            headers={"Retry-After": str(max(1, math.ceil(retry)))},
        )


@router.post("/login/", response_model=TokenPair, summary="Log in: username + password -> JWTs")
def login(
    body: LoginIn, session: SessionDep, settings: SettingsDep, client: ClientDep
) -> TokenPair:
    ip = audit._ip(client.ip)
    _throttle(session, settings, body.username, ip)
    user = session.scalar(select(User).where(User.username == body.username))
    if not verify_password(body.password, user.password_hash if user else None) or (
        user is not None and not user.is_active
    ):
        session.add(LoginFailure(username=body.username, ip_address=ip))
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
    assert user is not None
    session.execute(delete(LoginFailure).where(LoginFailure.username == body.username))
    session.execute(update(User).where(User.id == user.id).values(last_login_at=func.now()))
    audit.record(
        session,
        action="login",
        user_id=user.id,
        entity_type="user",
        entity_id=user.id,
        client=client,
    )
    pair = _pair(settings, user)
    session.commit()
    return pair


@router.post("/refresh/", response_model=TokenPair, summary="Rotate a refresh token")
def refresh(body: RefreshIn, session: SessionDep, settings: SettingsDep) -> TokenPair:
    try:
        claims = decode(settings, body.refresh, "refresh")
    except TokenError as exc:
        raise unauthorized(str(exc)) from exc
    user = session.get(User, claims.sub)
    if user is None or not user.is_active:
        raise unauthorized("User is inactive or does not exist.")
    if not _revoke(session, claims):
        session.rollback()
        raise unauthorized("Refresh token has already been used or revoked.")
    pair = _pair(settings, user)
    session.commit()
    return pair


@router.post("/logout/", status_code=204, summary="Revoke the access token (and a refresh token)")
def logout(
    user: UserDep,
    session: SessionDep,
    settings: SettingsDep,
    client: ClientDep,
    body: LogoutIn | None = None,
) -> Response:
    _revoke(session, user.claims)
    if body and body.refresh:
        try:
            claims = decode(settings, body.refresh, "refresh")
        except TokenError as exc:
            raise HTTPException(status_code=400, detail=f"refresh: {exc}") from exc
        if claims.sub != user.id:
            raise HTTPException(status_code=400, detail="refresh: token belongs to another user.")
        _revoke(session, claims)
    audit.record(
        session, action="logout", user=user, entity_type="user", entity_id=user.id, client=client
    )
    session.commit()
    return Response(status_code=204)


@router.get("/me/", response_model=Me, summary="The current user")
def me(user: UserDep, session: SessionDep) -> User:
    row = session.get(User, user.id)
    assert row is not None
    return row
