"""Users (admin only): list, create, read, update role/active/email/password, deactivate.

An admin cannot deactivate or demote themselves, so there is always at least one active admin
and nobody locks themselves out by accident. Setting a password or changing `is_active` ends
every session the user had (the schema moves users.token_epoch; docs/security.md)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from sqlalchemy import or_, select

from api import audit
from api.crud import apply_update, commit_and_refresh, insert_audited
from api.deps import AdminDep, ClientDep, SessionDep
from api.errors import FieldError, not_found
from api.pagination import Page, PageDep, apply_ordering, paginate
from api.schemas.common import IdPath, Ordering, Search, like_pattern
from api.schemas.users import Role, UserCreate, UserOut, UserPatch, UserReplace
from api.security import hash_password
from api.strict_query import StrictQuery
from models.tables import User

router = APIRouter(prefix="/api/users", tags=["users"], dependencies=[StrictQuery])

ORDERING = {
    "id": User.id,
    "username": User.username,
    "email": User.email,
    "role": User.role,
    "is_active": User.is_active,
    "created_at": User.created_at,
    "last_login_at": User.last_login_at,
}
AUDITED = ("username", "email", "role", "is_active")
# Marks a password change in `changes` without ever storing anything derived from it.
PASSWORD_CHANGED = {"password": ["***", "***"]}


def _get(session: SessionDep, user_id: int, *, for_update: bool = False) -> User:
    stmt = select(User).where(User.id == user_id)
    if for_update:
        stmt = stmt.with_for_update()
    user = session.scalar(stmt)
    if user is None:
        raise not_found("User not found.")
    return user


@router.get("/", response_model=Page[UserOut], summary="List users")
def list_users(
    request: Request,
    session: SessionDep,
    _: AdminDep,
    page: PageDep,
    role: Annotated[Role | None, Query()] = None,
    is_active: Annotated[bool | None, Query()] = None,
    search: Search = None,
    ordering: Ordering = None,
) -> dict[str, Any]:
    stmt = select(User)
    if role is not None:
        stmt = stmt.where(User.role == role)
    if is_active is not None:
        stmt = stmt.where(User.is_active.is_(is_active))
    if search:
        pattern = like_pattern(search)
        stmt = stmt.where(or_(User.username.ilike(pattern), User.email.ilike(pattern)))
    stmt = apply_ordering(stmt, ordering, ORDERING, tiebreak=User.id)
    return paginate(session, stmt, page, request, UserOut.model_validate)


@router.post("/", response_model=UserOut, status_code=201, summary="Create a user")
def create_user(body: UserCreate, session: SessionDep, admin: AdminDep, client: ClientDep) -> User:
    user = User(
        username=body.username,
        email=body.email,
        password_hash=hash_password(body.password),
        role=body.role,
        is_active=body.is_active,
    )
    insert_audited(session, user, AUDITED, user=admin, client=client, entity_type="user")
    return commit_and_refresh(session, user)


@router.get("/{user_id}/", response_model=UserOut, summary="Read a user")
def read_user(user_id: IdPath, session: SessionDep, _: AdminDep) -> User:
    return _get(session, user_id)


def _update(
    session: SessionDep,
    admin: AdminDep,
    client: ClientDep,
    user_id: int,
    data: dict[str, Any],
) -> User:
    user = _get(session, user_id, for_update=True)
    if user.id == admin.id:
        errors: dict[str, list[str]] = {}
        if data.get("is_active") is False:
            errors["is_active"] = ["You cannot deactivate your own account."]
        if data.get("role", "admin") != "admin":
            errors["role"] = ["You cannot remove your own admin role."]
        if errors:
            raise FieldError(errors)
    password = data.pop("password", None)
    extra = None
    if password is not None:
        user.password_hash = hash_password(password)
        extra = PASSWORD_CHANGED
    apply_update(
        session, user, data, user=admin, client=client, entity_type="user", extra_changes=extra
    )
    return commit_and_refresh(session, user)


@router.put("/{user_id}/", response_model=UserOut, summary="Replace a user's editable fields")
def replace_user(
    user_id: IdPath, body: UserReplace, session: SessionDep, admin: AdminDep, client: ClientDep
) -> User:
    data = body.model_dump()
    if data["password"] is None:
        del data["password"]
    return _update(session, admin, client, user_id, data)


@router.patch("/{user_id}/", response_model=UserOut, summary="Update some of a user's fields")
def patch_user(
    user_id: IdPath, body: UserPatch, session: SessionDep, admin: AdminDep, client: ClientDep
) -> User:
    return _update(session, admin, client, user_id, body.model_dump(exclude_unset=True))


@router.delete("/{user_id}/", status_code=204, summary="Deactivate a user (never deleted)")
def deactivate_user(
    user_id: IdPath, session: SessionDep, admin: AdminDep, client: ClientDep
) -> Response:
    user = _get(session, user_id, for_update=True)
    if user.id == admin.id:
        raise HTTPException(status_code=400, detail="You cannot deactivate your own account.")
    if user.is_active:
        user.is_active = False
        audit.record(
            session,
            action="deactivate",
            user=admin,
            entity_type="user",
            entity_id=user.id,
            changes={"is_active": [True, False]},
            client=client,
        )
        session.commit()
    return Response(status_code=204)
