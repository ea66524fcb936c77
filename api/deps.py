"""Request dependencies: the DB session, settings, the current user and client info."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from api.security import TokenClaims, TokenError, decode
from models.settings import Settings
from models.tables import RevokedToken, User

bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <access token>`")


async def get_settings_dep(request: Request) -> Settings:  # async: no threadpool hop
    return request.app.state.settings  # type: ignore[no-any-return]


def get_session(request: Request) -> Iterator[Session]:
    """One session per request; handlers commit explicitly, anything else is rolled back."""
    with Session(request.app.state.engine, expire_on_commit=False) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


@dataclass(frozen=True)
class CurrentUser:
    id: int
    username: str
    role: str
    claims: TokenClaims

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True)
class ClientInfo:
    ip: str | None
    user_agent: str | None


def client_info(request: Request) -> ClientInfo:
    ip = request.client.host if request.client else None
    return ClientInfo(ip=ip, user_agent=request.headers.get("user-agent"))


ClientDep = Annotated[ClientInfo, Depends(client_info)]


def unauthorized(detail: str) -> HTTPException:
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def token_claims(
    settings: Settings, credentials: HTTPAuthorizationCredentials | None
) -> TokenClaims:
    """The claims of a well-formed, signed, unexpired access token (no database needed)."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise unauthorized("Authentication credentials were not provided.")
    try:
        return decode(settings, credentials.credentials, "access")
    except TokenError as exc:
        raise unauthorized(str(exc)) from exc


def user_of(session: Session | Connection, claims: TokenClaims) -> CurrentUser:
    """The token's user, if active, the token is of the user's current epoch (no password
    change or deactivation since it was issued) and neither it nor its session (family) is
    revoked. One primary-key read of the user row and one of revoked_tokens; the role is read
    from the database, so a role change takes effect on the next request. The pop-up's fast
    path (api/routers/softphone.py) calls this too, on a bare connection."""
    revoked = (
        select(RevokedToken.jti).where(RevokedToken.jti.in_((claims.jti, claims.family))).exists()
    )
    row = session.execute(
        select(
            User.username, User.role, User.is_active, User.token_epoch, revoked.label("revoked")
        ).where(User.id == claims.sub)
    ).one_or_none()
    if row is None or not row.is_active:
        raise unauthorized("User is inactive or does not exist.")
    if row.token_epoch != claims.epoch:
        raise unauthorized("Session ended by a password change or deactivation; log in again.")
    if row.revoked:
        raise unauthorized("Token has been revoked.")
    return CurrentUser(id=claims.sub, username=row.username, role=row.role, claims=claims)


def current_user(
    session: SessionDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> CurrentUser:
    """A valid, unrevoked access token of an active user."""
    return user_of(session, token_claims(settings, credentials))


UserDep = Annotated[CurrentUser, Depends(current_user)]


def require_admin(user: UserDep) -> CurrentUser:
    if not user.is_admin:
        raise HTTPException(status_code=403, detail="Only administrators may do this.")
    return user


AdminDep = Annotated[CurrentUser, Depends(require_admin)]
