from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from api.schemas.common import Name, Slug

ProviderStatus = Literal["active", "inactive"]
ProviderType = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^\x00]*$")]


def _no_nul(value: Any) -> Any:
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("Text cannot contain NUL characters.")
    if isinstance(value, dict):
        for key, item in value.items():
            _no_nul(key)
            _no_nul(item)
    elif isinstance(value, list):
        for item in value:
            _no_nul(item)
    return value


# Free-form JSON (phone, e-mail, manager...); PostgreSQL's jsonb cannot store NUL characters.
ContactInfo = Annotated[dict[str, Any], AfterValidator(_no_nul)]


class ProviderOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    code: str
    name: str
    type: str | None
    contact_info: dict[str, Any] | None
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
