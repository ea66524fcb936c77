"""Request and response bodies of /api/sftp/: import and export requests, and their jobs."""

from __future__ import annotations

import datetime as dt
import posixpath
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from api.schemas.common import Id, JsonObject, StoredJsonObject

JobType = Literal["import", "export"]
JobStatus = Literal["pending", "running", "completed", "failed"]

# Where API-requested imports may read: the inbox, in the folder convention the inbox sensor
# uses (inbox/<project code>/<file> or inbox/<project code>/<provider code>/<file>).
INBOX = "inbox"
MAX_PATH = 1024
TEMP_SUFFIXES = (".part", ".tmp", ".filepart", ".crdownload", "~")
_BAD_CHARS = set("\\\x00\r\n\t") | {chr(c) for c in range(1, 32)}


def check_sftp_path(value: str) -> str:
    """A path relative to the SFTP root inside inbox/; refused, never silently normalised."""
    if any(c in _BAD_CHARS for c in value):
        raise ValueError("The path may not contain backslashes or control characters.")
    if value.startswith("/"):
        raise ValueError("Give the path relative to the SFTP root, e.g. inbox/acme/may.csv.")
    parts = value.split("/")
    if any(p in ("", ".", "..") for p in parts) or posixpath.normpath(value) != value:
        raise ValueError("The path may not contain empty, '.' or '..' segments.")
    if parts[0] != INBOX or not 3 <= len(parts) <= 4:
        raise ValueError(
            "Files are imported from inbox/<project code>/<file> or "
            "inbox/<project code>/<provider code>/<file>."
        )
    name = parts[-1]
    if len(name) > 255:
        raise ValueError("The file name is longer than 255 characters.")
    if name.startswith(".") or name.lower().endswith(TEMP_SUFFIXES):
        raise ValueError(f"{name!r} is a hidden or temporary (still uploading) file name.")
    return value


SftpPath = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_PATH,
        description="relative to the SFTP root: inbox/<project code>/[<provider code>/]<file>",
        examples=["inbox/spring-24/leadco/may.csv"],
    ),
    AfterValidator(check_sftp_path),
]
# The column map the parsers take: "phone" -> the phone column's header (or its 1-based
# number); any other key renames the attribute column with that header.
ColumnKey = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\x00]*$")]
ColumnRef = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[^\x00]*\S[^\x00]*$")]
ColumnNo = Annotated[int, Field(ge=1, le=16384)]
# The stem of outbox/<name>.csv, exactly as the export asset writes it (no trailing '.' or
# '_': the asset would strip them and the announced path would be wrong).
ExportName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9-])?$",
        description="file name in outbox/ ('.csv' is added); default <project code>-export-<id>",
        examples=["may-leads"],
    ),
]


class ImportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    project_id: Id
    file_path: SftpPath
    provider_id: Id | None = Field(
        None, description="default: the provider folder of the path, if any"
    )
    column_map: dict[ColumnKey, ColumnRef | ColumnNo] | None = Field(
        None,
        max_length=100,
        description='{"phone": "<header or 1-based column>", "<attribute>": "<header>", ...}',
        examples=[{"phone": "Телефон", "name": "ФИО"}],
    )

    @field_validator("column_map")
    @classmethod
    def _distinct_columns(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value:
            refs = [str(v).strip().casefold() for v in value.values()]
            if len(set(refs)) != len(refs):
                raise ValueError("Two keys name the same column.")
        return value


class ExportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    project_id: Id
    filters: JsonObject = Field(
        default_factory=dict,
        description="the numbers list's filters (same names and values as its query "
        'parameters), e.g. {"status": ["success"], "created_after": "2024-05-01"}',
    )
    file_name: ExportName | None = None


class SftpJobOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    job_type: JobType
    status: JobStatus
    project_id: int | None
    provider_id: int | None
    file_name: str | None
    file_path: str | None
    params: StoredJsonObject
    stats: StoredJsonObject
    records_count: int
    error_log: str | None
    dagster_run_id: str | None
    attempt: int = Field(
        description="The attempt now pending/running, or the last one; more than 1 means "
        "earlier attempts failed for a transient reason and were retried automatically."
    )
    next_retry_at: dt.datetime | None = Field(
        description="A pending automatic retry starts after this time (error_log says why)."
    )
    requested_by: int | None
    started_at: dt.datetime | None
    completed_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime
