from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from api.schemas.common import StoredJsonObject


class AuditLogOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    user_id: int | None
    actor: str | None
    action: str
    entity_type: str | None
    entity_id: int | None
    changes: StoredJsonObject
    ip_address: str | None
    user_agent: str | None
    created_at: dt.datetime

    @field_validator("ip_address", mode="before")
    @classmethod
    def _inet(cls, value: Any) -> str | None:
        # psycopg returns INET as an ipaddress object.
        return None if value is None else str(value)
