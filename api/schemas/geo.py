from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.common import CountryCode, TimeZoneName

Place = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[^\x00]*$")]


class GeoOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    country_code: str | None
    region: str | None
    city: str | None
    timezone: str | None
    created_at: dt.datetime
    updated_at: dt.datetime


class GeoCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # no coercion: "1" is not 1

    country_code: CountryCode | None = None
    region: Place | None = None
    city: Place | None = None
    timezone: TimeZoneName | None = None


class GeoReplace(GeoCreate):
    """PUT: omitted fields become null."""


class GeoPatch(GeoCreate):
    """PATCH: only the fields sent change; null clears one."""
