from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.common import JsonObject, Name, Slug, StoredJsonObject

ProviderStatus = Literal["active", "inactive"]
ProviderType = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^\x00]*$")]
# Free-form JSON (phone, e-mail, manager...), within the limits of models/json_limits.py.
ContactInfo = JsonObject


class ProviderOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    code: str
    name: str
    type: str | None
    contact_info: StoredJsonObject
    status: ProviderStatus
    created_at: dt.datetime
    updated_at: dt.datetime


class ProviderCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # no coercion: "1" is not 1

    code: Slug
    name: Name
    type: ProviderType | None = None
    contact_info: ContactInfo | None = None
    status: ProviderStatus = "active"


class ProviderReplace(BaseModel):
    """PUT. `code` is fixed at creation: SFTP folders are named after it."""

    model_config = ConfigDict(extra="forbid", strict=True)  # no coercion: "1" is not 1

    name: Name
    type: ProviderType | None = None
    contact_info: ContactInfo | None = None
    status: ProviderStatus


class ProviderPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # no coercion: "1" is not 1

    name: Name = None  # type: ignore[assignment]  # omitted = unchanged; null is refused
    type: ProviderType | None = None
    contact_info: ContactInfo | None = None
    status: ProviderStatus = None  # type: ignore[assignment]
