"""The login throttle: guessing is slowed down, and nobody can use it to lock anyone else out.

Every attempt is *reserved* before its password is checked: under advisory locks on its username
and its address, the recent failures are counted and, if the attempt may go ahead, a
`login_failures` row is inserted; the caller commits at once (releasing the locks and the
connection) and verifies the password with no connection held. A right password deletes its row
again (`refund`); a wrong one leaves it counted. So however many guesses arrive together, no more
are checked than the limits allow.

The limits (docs/security.md, "Login throttling"):
- per username+address pair: `login_max_failures` per window, then 429 for that pair only —
  a typist behind an office NAT slows down themselves, not the other agents behind it;
- per address: `login_max_failures_per_address` failures per window across usernames (one
  address spraying names), not applied to known-good pairs;
- per username, across addresses: after `login_max_failures` failures in the window, each
  attempt waits 2^(failures - limit) seconds after the previous one, at most
  `login_backoff_max_seconds` — a back-off, never a lock, and not applied to known-good pairs.
A known-good pair is a username with one of the addresses it last logged in from successfully
(`users.known_addresses`), so guessing an account's name from elsewhere never keeps its owner
out from where they usually work.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from fastapi import HTTPException
from sqlalchemy import (
    ColumnElement,
    any_,
    cast,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import ARRAY, INET
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import Grouping

from models.settings import Settings
from models.tables import LoginFailure, User

# How many recent login addresses per user count as known-good.
KNOWN_ADDRESSES = 10
# 2**30 seconds is beyond any cap: the exponent stops growing there.
_MAX_EXPONENT = 30


@dataclass(frozen=True)
class Reservation:
    """An attempt allowed to be checked: its login_failures row until refunded."""

    row_id: int


def _lock(session: Session, key: str) -> None:
    session.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(key, 0))))


def too_many(retry_after: float) -> HTTPException:
    return HTTPException(
        status_code=429,
        detail="Too many failed logins; try again later.",
        headers={"Retry-After": str(max(1, math.ceil(retry_after)))},
    )


def backoff_seconds(settings: Settings, failures: int) -> float:
    """The wait after the previous attempt on a username with this many recent failures."""
    if failures < settings.login_max_failures:
        return 0.0
    exponent = min(failures - settings.login_max_failures, _MAX_EXPONENT)
    return float(min(settings.login_backoff_max_seconds, 2**exponent))


def reserve(
    session: Session, settings: Settings, username: str, ip: str | None, *, known: bool
) -> Reservation:
    """Count and reserve one attempt, or raise 429 with Retry-After. The caller commits."""
    # Username first, then address, in every transaction: no two can wait for each other.
    _lock(session, f"numbase-login-user:{username}")
    if ip is not None:
        _lock(session, f"numbase-login-address:{ip}")
    failure = LoginFailure
    # The time after the locks were granted, not the transaction's start (now()): waiting for
    # a lock must not make the counts or Retry-After stale. A subquery: evaluated once, and
    # the window condition stays an index condition.
    now = select(func.clock_timestamp()).scalar_subquery()
    window = dt.timedelta(seconds=settings.login_window_seconds)
    is_user = failure.username == username
    is_pair = is_user & failure.ip_address.is_not_distinct_from(ip)
    is_address = failure.ip_address == ip if ip is not None else literal(False)
    row = session.execute(
        select(
            func.count().filter(is_pair).label("pair"),
            func.min(failure.attempted_at).filter(is_pair).label("pair_oldest"),
            func.count().filter(is_user).label("user"),
            func.max(failure.attempted_at).filter(is_user).label("user_latest"),
            func.count().filter(is_address).label("address"),
            func.min(failure.attempted_at).filter(is_address).label("address_oldest"),
            now.label("now"),
        ).where(failure.attempted_at > now - window, or_(is_user, is_address))
    ).one()
    if row.pair >= settings.login_max_failures:
        raise too_many((row.pair_oldest + window - row.now).total_seconds())
    if not known and row.address >= settings.login_max_failures_per_address:
        raise too_many((row.address_oldest + window - row.now).total_seconds())
    if not known and row.user_latest is not None:
        wait = backoff_seconds(settings, row.user) - (row.now - row.user_latest).total_seconds()
        if wait > 0:
            raise too_many(wait)
    row_id = session.scalar(
        insert(LoginFailure)
        .values(username=username, ip_address=ip, attempted_at=now)
        .returning(LoginFailure.id)
    )
    assert row_id is not None
    return Reservation(row_id=row_id)


def refund(session: Session, reservation: Reservation) -> None:
    """The password was right: this attempt is no failure."""
    session.execute(delete(LoginFailure).where(LoginFailure.id == reservation.row_id))


def is_known(ip: str | None) -> ColumnElement[bool]:
    """SQL: is this address one of the user's known-good login addresses?"""
    if ip is None:
        return literal(False)
    return cast(ip, INET) == any_(User.known_addresses)


def remember_address(ip: str | None) -> ColumnElement[list[str]]:
    """SQL for the new users.known_addresses after a successful login from ip."""
    if ip is None:
        return User.known_addresses  # type: ignore[return-value]
    address = cast(ip, INET)
    # Grouping: PostgreSQL subscripts a function call only in parentheses.
    newest_first = type_coerce(
        Grouping(func.array_prepend(address, func.array_remove(User.known_addresses, address))),
        ARRAY(INET),
    )
    return newest_first[1:KNOWN_ADDRESSES]
