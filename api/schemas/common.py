"""Field types shared by request/response schemas: ids that fit a BIGINT, text PostgreSQL can
store (no NUL), slugs, free-form JSON objects within models/json_limits.py, and the page model
re-exported for routers."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from functools import lru_cache
from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema

from api.pagination import Page
from models.json_limits import JsonLimitError, check_json
from models.number_filters import as_utc

__all__ = ["Page"]


MAX_ID = 2**63 - 1

# Path and query ids: anything past BIGINT is a 400 at the edge, not a database error.
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]
IdQuery = Annotated[int | None, Query(ge=1, le=MAX_ID)]
Id = Annotated[int, Field(ge=1, le=MAX_ID)]

# PostgreSQL text cannot hold NUL; saying so in the schema keeps generated data honest.
_NO_NUL = r"^[^\x00]*$"
Text = Annotated[str, Field(pattern=_NO_NUL)]
Name = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[^\x00]*[^\x00\s][^\x00]*$")]
LongText = Annotated[str, Field(max_length=10_000, pattern=_NO_NUL)]
# The slug SFTP folder names use; the same rule as the ck_*_code_slug CHECKs.
Slug = Annotated[
    str,
    Field(
        min_length=1,
        max_length=63,
        pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$",
        description="lower-case slug: a-z, 0-9, '_' and '-'",
    ),
]
Search = Annotated[
    str | None,
    Query(max_length=100, pattern=_NO_NUL, description="case-insensitive substring"),
]
Ordering = Annotated[
    str | None,
    Query(max_length=200, pattern=_NO_NUL, description="comma-separated fields, '-' = desc"),
]


def _within_json_limits(value: Any) -> Any:
    try:
        check_json(value)
    except JsonLimitError as exc:
        where = f" (under {exc.key!r})" if exc.key else ""
        raise ValueError(f"{exc}{where}") from None
    return value


def _readable(value: object) -> object:
    # A read shows any stored value, wrapped when another writer stored something that is not
    # an object. (Values too deep to serialize were clipped as they were loaded: the API's
    # connections read jsonb with models.json_limits.load_stored_json, api/json_reads.py.)
    if value is None or isinstance(value, dict):
        return value
    return {"_value": value}


# A free-form JSON object a client sends (result_data, attributes, contact_info, filters...):
# the limits of models/json_limits.py, as a 400 on the field.
JsonObject = Annotated[dict[str, Any], AfterValidator(_within_json_limits)]
# Any JSON value under the same limits (e.g. the extra fields of a webhook event).
JsonValue = Annotated[Any, AfterValidator(_within_json_limits)]
# The same kind of value read back from the database (always an object in the answer).
StoredJsonObject = Annotated[dict[str, Any] | None, BeforeValidator(_readable)]


def _iso_datetime(value: object) -> object:
    # pydantic would also take '0.5' as a Unix timestamp; the contract is ISO 8601 only.
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError as exc:
            raise ValueError("Give an ISO 8601 date-time, e.g. 2024-05-01T00:00:00Z.") from exc
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        # As UTC: Python takes offsets PostgreSQL refuses (past +-15:59, e.g. -16:30).
        return as_utc(value)
    return value


IsoDateTime = Annotated[dt.datetime, BeforeValidator(_iso_datetime)]
CreatedAfter = Annotated[IsoDateTime | None, Query(description="created_at >= this instant")]
CreatedBefore = Annotated[IsoDateTime | None, Query(description="created_at < this instant")]

_TIME_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?$"


def _local_time(value: object) -> object:
    # A wall-clock time as text: 'HH:MM' or 'HH:MM:SS'; no offset (the project's geo decides).
    if not isinstance(value, str):
        raise ValueError("Give a time as 'HH:MM' or 'HH:MM:SS'.")
    try:
        parsed = dt.time.fromisoformat(value)
    except ValueError as exc:
        raise ValueError("Give a time as 'HH:MM' or 'HH:MM:SS'.") from exc
    if parsed.tzinfo is not None:
        raise ValueError("Give a local time without a UTC offset, e.g. '09:00'.")
    return parsed


TIME_SCHEMA = {"type": "string", "pattern": _TIME_PATTERN, "examples": ["09:00", "18:30:00"]}
# JSON Schema's format "time" demands an offset; these are offset-free wall-clock times.
LocalTime = Annotated[dt.time, BeforeValidator(_local_time), WithJsonSchema(TIME_SCHEMA)]


def like_pattern(term: str) -> str:
    """An ILIKE pattern matching `term` literally anywhere (escaping % _ and \\)."""
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@lru_cache(maxsize=1)
def iana_timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _check_timezone(value: str) -> str:
    if value not in iana_timezones():
        raise ValueError(f"{value!r} is not an IANA time zone name (e.g. 'Europe/Moscow').")
    return value


TimeZoneName = Annotated[
    str,
    Field(min_length=1, max_length=50, description="IANA name, e.g. Europe/Moscow"),
    AfterValidator(_check_timezone),
]

# ISO 3166-1 alpha-2 (from tzdata's iso3166.tab).
ISO_COUNTRIES = frozenset(
    """AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ
    BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO
    DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU
    GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW
    KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU
    MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW
    PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF
    TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA
    ZM ZW""".split()  # noqa: SIM905 - a compact table
)


def _check_country(value: str) -> str:
    if value not in ISO_COUNTRIES:
        raise ValueError(f"{value!r} is not an ISO 3166-1 alpha-2 country code.")
    return value


CountryCode = Annotated[
    str,
    Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2, upper case (e.g. RU)"),
    AfterValidator(_check_country),
]
