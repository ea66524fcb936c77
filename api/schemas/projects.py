from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.common import LongText, Name, Slug

# 'deleted' is reached only through DELETE (soft delete), never written directly.
LiveStatus = Literal["active", "paused"]
# models.tables.DEDUPE_SCOPES; docs/lead-quality.md
DedupeScope = Literal["project", "all_projects"]
WindowDays = Annotated[int, Field(ge=1, le=3650)]


class ProjectOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    code: str
    name: str
    description: str | None
    status: Literal["active", "paused", "deleted"]
    is_deleted: bool
    deleted_at: dt.datetime | None
    created_by: int | None
    created_at: dt.datetime
    updated_at: dt.datetime
    dedupe_scope: DedupeScope = Field(
        "project",
        description="which numbers a load skips: `project` (only this project's own), "
        "`all_projects` (also any number in another live project)",
    )
    dedupe_window_days: int | None = Field(
        None, description="also skip a number called in any project within this many days"
    )


class ProjectCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # no coercion: "1" is not 1

    code: Slug
    name: Name
    description: LongText | None = None
    status: LiveStatus = "active"


class ProjectReplace(BaseModel):
    """PUT. `code` is fixed at creation: SFTP folders are named after it."""

    model_config = ConfigDict(extra="forbid", strict=True)  # no coercion: "1" is not 1

    name: Name
    description: LongText | None = None
    status: LiveStatus


class ProjectPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # no coercion: "1" is not 1

    name: Name = None  # type: ignore[assignment]  # omitted = unchanged; null is refused
    description: LongText | None = None
    status: LiveStatus = None  # type: ignore[assignment]
    dedupe_scope: DedupeScope = None  # type: ignore[assignment]
    dedupe_window_days: WindowDays | None = Field(None, description="null: no window")
