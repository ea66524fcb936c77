from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict

from api.schemas.common import Id
from api.schemas.geo import GeoOut
from api.schemas.providers import ProviderOut


class ProviderLinkIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # no coercion: "1" is not 1

    provider_id: Id


class GeoLinkIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # no coercion: "1" is not 1

    geo_id: Id


class MemberIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # no coercion: "1" is not 1

    user_id: Id


class LinkedProvider(ProviderOut):
    linked_at: dt.datetime


class LinkedGeo(GeoOut):
    linked_at: dt.datetime


class MemberOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    user_id: int
    username: str
    email: str
    role: Literal["admin", "manager"]
    is_active: bool
    added_at: dt.datetime
