"""The numbers list's filters, translated to SQL in one place.

`NumberFilters.from_params` validates a plain mapping (query parameters, an export job's
`params` JSON) with clear messages; `number_conditions` is the single filter -> SQL translation
(SQLAlchemy expressions, so every value is a bound parameter); `copy_query` compiles the same
conditions for psycopg's `COPY (...) TO STDOUT`, which the SFTP export and the API's CSV export
can share.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import phonenumbers
from sqlalchemy import ColumnElement, func, not_, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from models.dialing.eligibility import dnc_listed
from models.dialing.resolve import is_zone
from models.phones import InvalidPhone, normalize_phone
from models.tables import NUMBER_STATUSES, TIMEZONE_SOURCES, PhoneNumber

# Columns of an export file, in order.
EXPORT_COLUMNS: tuple[str, ...] = (
    "id",
    "phone_number",
    "status",
    "project_id",
    "provider_id",
    "geo_id",
    "call_attempts",
    "last_call_at",
    "created_at",
    "attributes",
)


class FilterError(ValueError):
    """A filter value is malformed; the message names the filter (and `.field` holds it)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        head = message.split(" ", 1)[0]
        self.field = field or (head if head in FILTER_NAMES else "non_field_errors")


# What PostgreSQL can compare with the columns: ids are BIGINT, call_attempts INTEGER. A value
# past them is refused here, not by the database halfway through an export's COPY.
MAX_ID = 2**63 - 1
MAX_CALL_ATTEMPTS = 2**31 - 1

# Every filter `from_params` knows (query parameter names of the numbers list).
FILTER_NAMES = frozenset(
    {
        "project_id",
        "status",
        "provider_id",
        "geo_id",
        "phone",
        "created_after",
        "created_before",
        "call_attempts_lt",
        "call_attempts_gte",
        "last_call_after",
        "last_call_before",
        # Dialing (models/dialing/): resolved zone, registry region, how the zone was found.
        "timezone",
        "region",
        "timezone_source",
        "callable_now",
        "eligible_now",  # the dial queue's eligibility (models/dialing/queue.py)
        "include_dnc",  # exports only: numbers on a do-not-call list are left out unless true
        "source_load_id",
    }
)


@dataclass(frozen=True)
class NumberFilters:
    project_id: int | None = None
    project_ids: tuple[int, ...] | None = None  # a manager's scope: None = no restriction
    statuses: tuple[str, ...] = ()
    provider_id: int | None = None
    geo_id: int | None = None
    created_after: dt.datetime | None = None
    created_before: dt.datetime | None = None
    # `phone`: a full number matches exactly (E.164); a partial one is a prefix of the E.164
    # form (see _phone). Either way the unique (phone_number, project_id) btree serves it.
    phone: str | None = None
    phone_prefix: bool = False
    call_attempts_lt: int | None = None
    call_attempts_gte: int | None = None
    last_call_after: dt.datetime | None = None
    last_call_before: dt.datetime | None = None
    timezone: str | None = None
    region: str | None = None
    timezone_sources: tuple[str, ...] = ()
    # callable_now=true|false: the eligibility predicate at the moment the query is built, set by
    # `with_callable` (it reads the holidays and schedules); number_conditions refuses without.
    callable_now: bool | None = None
    callable_predicate: Any = field(default=None, compare=False, repr=False)
    # eligible_now=true|false: the dial queue's eligibility (a lease could hand it out now:
    # rules, retries, leases, DNC, hours, project active), set by `with_callable` too.
    eligible_now: bool | None = None
    eligible_predicate: Any = field(default=None, compare=False, repr=False)
    include_dnc: bool = False
    source_load_id: int | None = None  # the load that inserted the number (number_loads.id)

    @classmethod
    def from_params(cls, params: Mapping[str, Any], *, region: str = "RU") -> NumberFilters:
        known = FILTER_NAMES
        unknown = sorted(set(params) - known)
        if unknown:
            raise FilterError(f"unknown filter(s): {', '.join(unknown)}")
        statuses = _statuses(params.get("status"))
        after = _timestamp("created_after", params.get("created_after"))
        before = _timestamp("created_before", params.get("created_before"))
        if after and before and after >= before:
            raise FilterError("created_after must be earlier than created_before")
        call_after = _timestamp("last_call_after", params.get("last_call_after"))
        call_before = _timestamp("last_call_before", params.get("last_call_before"))
        if call_after and call_before and call_after >= call_before:
            raise FilterError("last_call_after must be earlier than last_call_before")
        phone, prefix = _phone(params.get("phone"), region)
        return cls(
            phone=phone,
            phone_prefix=prefix,
            call_attempts_lt=_count("call_attempts_lt", params.get("call_attempts_lt")),
            call_attempts_gte=_count("call_attempts_gte", params.get("call_attempts_gte")),
            last_call_after=call_after,
            last_call_before=call_before,
            project_id=_positive("project_id", params.get("project_id")),
            statuses=statuses,
            provider_id=_positive("provider_id", params.get("provider_id")),
            geo_id=_positive("geo_id", params.get("geo_id")),
            created_after=after,
            created_before=before,
            timezone=_zone(params.get("timezone")),
            region=_text("region", params.get("region")),
            timezone_sources=_choices(
                "timezone_source", params.get("timezone_source"), TIMEZONE_SOURCES
            ),
            callable_now=_bool("callable_now", params.get("callable_now")),
            eligible_now=_bool("eligible_now", params.get("eligible_now")),
            include_dnc=bool(_bool("include_dnc", params.get("include_dnc"))),
            source_load_id=_positive("source_load_id", params.get("source_load_id")),
        )


def number_conditions(f: NumberFilters) -> list[ColumnElement[bool]]:
    """The WHERE conditions on phone_numbers for these filters (AND-ed by the caller)."""
    t = PhoneNumber.__table__.c
    out: list[ColumnElement[bool]] = []
    if f.project_id is not None:
        out.append(t.project_id == f.project_id)
    if f.project_ids is not None:
        out.append(t.project_id.in_(f.project_ids))
    if f.statuses:
        out.append(t.status == f.statuses[0] if len(f.statuses) == 1 else t.status.in_(f.statuses))
    if f.provider_id is not None:
        out.append(t.provider_id == f.provider_id)
    if f.geo_id is not None:
        out.append(t.geo_id == f.geo_id)
    if f.source_load_id is not None:
        out.append(t.source_load_id == f.source_load_id)
    if f.created_after is not None:
        out.append(t.created_at >= f.created_after)
    if f.created_before is not None:
        out.append(t.created_at < f.created_before)
    if f.phone is not None:
        if f.phone_prefix:
            # Pattern built here, not `col LIKE :p || '%'`, so the planner sees a constant
            # prefix and turns it into an index range (the column is COLLATE "C").
            out.append(t.phone_number.like(_like_escape(f.phone) + "%", escape="\\"))
        else:
            out.append(t.phone_number == f.phone)
    if f.call_attempts_lt is not None:
        out.append(t.call_attempts < f.call_attempts_lt)
    if f.call_attempts_gte is not None:
        out.append(t.call_attempts >= f.call_attempts_gte)
    if f.last_call_after is not None:
        out.append(t.last_call_at >= f.last_call_after)
    if f.last_call_before is not None:
        out.append(t.last_call_at < f.last_call_before)
    if f.timezone is not None:
        out.append(t.timezone == f.timezone)
    if f.region is not None:
        out.append(t.region == f.region)
    if f.timezone_sources:
        out.append(t.timezone_source.in_(f.timezone_sources))
    if f.callable_now is not None:
        if f.callable_predicate is None:
            raise FilterError("callable_now needs with_callable() before the query is built")
        out.append(f.callable_predicate if f.callable_now else not_(f.callable_predicate))
    if f.eligible_now is not None:
        if f.eligible_predicate is None:
            raise FilterError("eligible_now needs with_callable() before the query is built")
        out.append(f.eligible_predicate if f.eligible_now else not_(f.eligible_predicate))
    return out


def with_callable(
    session: Session, f: NumberFilters, now: dt.datetime | None = None
) -> NumberFilters:
    """`f` with its callable_now / eligible_now predicates computed for `now` (default: this
    moment)."""
    if f.callable_now is None and f.eligible_now is None:
        return f
    from models.dialing.eligibility import callable_condition
    from models.dialing.policy import PolicyConfig
    from models.dialing.queue import eligible_condition
    from models.settings import get_settings

    if f.project_id is not None:
        scope: tuple[int, ...] | None = (f.project_id,)
    else:
        scope = f.project_ids
    at = now or dt.datetime.now(dt.UTC)
    config = PolicyConfig.from_settings(get_settings())
    if f.callable_now is not None:
        f = replace(f, callable_predicate=callable_condition(session, at, scope, config))
    if f.eligible_now is not None:
        f = replace(f, eligible_predicate=eligible_condition(session, at, scope, config))
    return f


def filters_as_params(f: NumberFilters) -> dict[str, Any]:
    """The non-empty filters as JSON-safe query parameters (audit rows, job params)."""
    out: dict[str, Any] = {}
    for name in sorted(FILTER_NAMES - {"status", "phone", "timezone_source"}):
        if (name in ("callable_now", "eligible_now") and getattr(f, name) is None) or (
            name == "include_dnc" and not f.include_dnc
        ):
            continue
        value = getattr(f, name)
        if value is not None:
            out[name] = value.isoformat() if isinstance(value, dt.datetime) else value
    if f.statuses:
        out["status"] = list(f.statuses)
    if f.timezone_sources:
        out["timezone_source"] = list(f.timezone_sources)
    if f.phone is not None:
        out["phone"] = f.phone
    if f.project_ids is not None:
        out["project_ids"] = list(f.project_ids)
    return out


def copy_query(
    f: NumberFilters, columns: Sequence[str] = EXPORT_COLUMNS
) -> tuple[str, dict[str, Any]]:
    """`COPY (SELECT ...) TO STDOUT` as CSV with a header, in psycopg's %(name)s style.

    psycopg merges COPY parameters client-side with proper quoting, so values stay parameters
    here and are never formatted into the SQL by us.
    """
    t = PhoneNumber.__table__.c
    bad = [c for c in columns if c not in t]
    if bad:
        raise FilterError(f"unknown column(s): {', '.join(bad)}")
    conditions = number_conditions(f)
    if not f.include_dnc:  # exports leave do-not-call numbers out unless asked
        conditions.append(not_(dnc_listed(func.now())))
    stmt = select(*(t[c] for c in columns)).where(*conditions).order_by(t.id)
    # render_postcompile: expanding IN (...) lists become plain parameters COPY can take.
    compiled = stmt.compile(
        dialect=postgresql.psycopg.dialect(), compile_kwargs={"render_postcompile": True}
    )
    query = f"COPY ({compiled}) TO STDOUT WITH (FORMAT csv, HEADER)"
    return query, dict(compiled.params)


def _positive(name: str, value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise FilterError(f"{name} must be an integer, got {value!r}") from None
    if isinstance(value, bool) or number < 1 or (isinstance(value, float) and value != number):
        raise FilterError(f"{name} must be a positive integer, got {value!r}")
    if number > MAX_ID:
        raise FilterError(f"{name} must be at most {MAX_ID}, got {value!r}")
    return number


def _count(name: str, value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise FilterError(f"{name} must be an integer, got {value!r}") from None
    if isinstance(value, bool) or number < 0 or (isinstance(value, float) and value != number):
        raise FilterError(f"{name} must be a non-negative integer, got {value!r}")
    if number > MAX_CALL_ATTEMPTS:
        raise FilterError(f"{name} must be at most {MAX_CALL_ATTEMPTS}, got {value!r}")
    return number


_PHONE_SEPARATORS = str.maketrans("", "", " \t-().\u00a0")


def _phone(value: Any, region: str) -> tuple[str | None, bool]:
    """-> (E.164 number, False) for a full number in any format, or (E.164 prefix, True).

    A partial number is read like phones.py reads a national one: `+`/`00` start the
    international digits; otherwise the region's trunk prefix (RU `8`) or its country code
    (`7`) is replaced by `+7`, and anything else is the start of a national number
    (`916` -> `+7916`).
    """
    if value is None or value == "":
        return None, False
    text = str(value).strip()
    try:
        return normalize_phone(text, region), False
    except InvalidPhone:
        pass
    digits = text.translate(_PHONE_SEPARATORS)
    intl = digits.startswith("+")
    digits = digits[1:] if intl else digits
    if not digits.isdigit() or not digits.isascii() or len(digits) > 15:
        raise FilterError(
            "phone must be a phone number or its first digits (optionally with a leading +), "
            f"got {value!r}"
        )
    if not intl and digits.startswith("00"):
        digits, intl = digits[2:], True
    if not intl:
        meta = phonenumbers.PhoneMetadata.metadata_for_region(region.upper())
        cc = str(meta.country_code) if meta else ""
        trunk = (meta.national_prefix or "") if meta else ""
        if trunk and digits.startswith(trunk):
            digits = cc + digits[len(trunk) :]
        elif not digits.startswith(cc):
            digits = cc + digits
    if not digits:
        raise FilterError("phone must contain at least one digit")
    return "+" + digits, True


def _like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _bool(name: str, value: Any) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise FilterError(f"{name} must be true or false, got {value!r}")


def _zone(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not is_zone(value):
        raise FilterError(
            f"timezone must be an IANA time zone such as Europe/Moscow, got {value!r}"
        )
    return value


def _text(name: str, value: Any, max_length: int = 255) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > max_length or "\x00" in value:
        raise FilterError(f"{name} must be text of at most {max_length} characters")
    return value.strip()


def _choices(name: str, value: Any, allowed: tuple[str, ...]) -> tuple[str, ...]:
    if value is None or value == "" or value == []:
        return ()
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise FilterError(f"{name} must be a list or a comma-separated string, got {value!r}")
    out: list[str] = []
    for item in items:
        choice = str(item).strip()
        if choice not in allowed:
            raise FilterError(f"{name} {choice!r} is not one of {', '.join(allowed)}")
        if choice not in out:
            out.append(choice)
    return tuple(out)


def _statuses(value: Any) -> tuple[str, ...]:
    if value is None or value == "" or value == []:
        return ()
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise FilterError(f"status must be a list or a comma-separated string, got {value!r}")
    out = []
    for item in items:
        status = str(item).strip()
        if status not in NUMBER_STATUSES:
            raise FilterError(f"status {status!r} is not one of {', '.join(NUMBER_STATUSES)}")
        if status not in out:
            out.append(status)
    return tuple(out)


def _timestamp(name: str, value: Any) -> dt.datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        parsed = value
    else:
        try:
            parsed = dt.datetime.fromisoformat(str(value))
        except ValueError:
            raise FilterError(f"{name} must be an ISO 8601 date or timestamp") from None
    # A naive value is taken as UTC: the server's zone must not change an export's rows. An
    # aware one is sent as UTC: Python takes offsets PostgreSQL refuses (past +-15:59).
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=dt.UTC)
    return as_utc(parsed)


def as_utc(value: dt.datetime) -> dt.datetime:
    """An aware instant in UTC; one past Python's range (0001-01-01T00:00+05:00) is clamped to
    its end, which filters the same rows: nothing numbase stores is that old or that late."""
    try:
        return value.astimezone(dt.UTC)
    except OverflowError:
        edge = dt.datetime.min if value.year == 1 else dt.datetime.max
        return edge.replace(tzinfo=dt.UTC)
