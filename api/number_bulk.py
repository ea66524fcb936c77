"""POST /api/phone-numbers/bulk/: JSON (up to 100,000 numbers) or a CSV upload, both through
the COPY bulk loader (models/bulk.py) in the request's own transaction, with one audit row.

CSV: the first line is a header; the delimiter is whichever of `,` `;` tab occurs most in it.
The phone column is found by name (PHONE_COLUMNS, case-insensitive); every other named column
becomes an attribute of the number (empty cells left out); cells beyond the header are kept as
`column_N`. Reject line numbers are the file's line numbers (the header is line 1). The text
rules are models/csv_rows.py's: a row with a NUL byte is rejected alone; bytes not valid in
`encoding`, or a cell over 131,072 characters, refuse the upload with a 400 naming the line
(the caller chose the encoding and can send again), changing nothing.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterator
from typing import IO, Any

import phonenumbers
from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from api import audit
from api.deps import ClientDep, CurrentUser, SessionDep, SettingsDep, UserDep
from api.errors import FieldError, field_errors
from api.number_scope import check_refs
from api.observability import IMPORT_ROWS
from api.schemas.numbers import BulkCreateIn, BulkCreateOut
from api.scope import get_project_or_404
from models import csv_rows
from models.bulk import BulkLoadError, BulkLoadTimeout, RowChunk, chunked, load_numbers
from models.number_loads import LoadSource
from models.settings import Settings

PHONE_COLUMNS = (
    "phone_number",
    "phone",
    "phonenumber",
    "phone number",
    "number",
    "msisdn",
    "tel",
    "telephone",
    "mobile",
    "телефон",
    "номер",
    "номер телефона",
)
CSV_CHUNK_ROWS = 50_000
REJECT_LIMIT = 1000


class CsvForm(BaseModel):
    model_config = ConfigDict(extra="forbid")

    project_id: int = Field(ge=1)
    provider_id: int | None = Field(None, ge=1)
    geo_id: int | None = Field(None, ge=1)
    region: str | None = Field(None, min_length=2, max_length=2)
    encoding: str = Field("utf-8", max_length=64)

    @field_validator("encoding")
    @classmethod
    def _text_encoding(cls, value: str) -> str:
        try:
            return csv_rows.check_encoding(value)
        except ValueError as exc:  # rot13, hex, undefined...: a 400 naming `encoding`
            raise PydanticCustomError("encoding", str(exc)) from None


def _field_errors(exc: ValidationError) -> FieldError:
    return FieldError(field_errors(exc.errors()))


def _region(value: str | None, settings: Settings) -> str:
    region = (value or settings.phone_region).upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise FieldError("region", f"{value!r} is not a known ISO 3166 region code.")
    return region


async def bulk_create_endpoint(
    request: Request,
    session: SessionDep,
    user: UserDep,
    settings: SettingsDep,
    client: ClientDep,
) -> dict[str, Any]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        form = await request.form(max_files=1, max_fields=10)
        upload = form.get("file")
        fields = {k: v for k, v in form.items() if k != "file" and v != ""}
        try:
            meta = CsvForm.model_validate(fields)
        except ValidationError as exc:
            raise _field_errors(exc) from None
        if not isinstance(upload, UploadFile):
            raise FieldError("file", "Attach the CSV file as the `file` part.")
        try:
            codecs.lookup(meta.encoding)
        except LookupError:
            raise FieldError("encoding", f"Unknown encoding {meta.encoding!r}.") from None
        return await run_in_threadpool(
            _load,
            session,
            user,
            settings,
            client,
            meta.project_id,
            meta.provider_id,
            meta.geo_id,
            meta.region,
            lambda: _csv_chunks(upload.file, meta.encoding),
            f"csv:{upload.filename or ''}",
        )
    if content_type != "application/json":
        raise FieldError(
            "non_field_errors", "Send application/json or multipart/form-data with a CSV `file`."
        )
    try:
        body = BulkCreateIn.model_validate_json(await request.body())
    except ValidationError as exc:
        raise _field_errors(exc) from None
    phones = [n.phone_number for n in body.numbers]
    attrs = [n.attributes for n in body.numbers]
    has_attrs = any(a for a in attrs)
    return await run_in_threadpool(
        _load,
        session,
        user,
        settings,
        client,
        body.project_id,
        body.provider_id,
        body.geo_id,
        body.region,
        lambda: chunked(phones, attrs if has_attrs else None),
        "json",
    )


def _load(
    session: SessionDep,
    user: CurrentUser,
    settings: Settings,
    client: ClientDep,
    project_id: int,
    provider_id: int | None,
    geo_id: int | None,
    region: str | None,
    chunks: Any,
    source: str,
) -> dict[str, Any]:
    region = _region(region, settings)
    get_project_or_404(session, user, project_id)
    check_refs(session, provider_id, geo_id)
    # The session's own connection: the load and its audit row are one transaction.
    conn = session.connection().connection.driver_connection
    try:
        result = load_numbers(
            conn,  # type: ignore[arg-type]
            project_id,
            chunks(),
            provider_id=provider_id,
            geo_id=geo_id,
            region=region,
            reject_limit=REJECT_LIMIT,
            record=LoadSource("api", source=source, created_by=user.id),
        )
    except BulkLoadTimeout:
        session.rollback()
        raise  # 503 naming the wait (api/errors.py): the input is fine, a retry may succeed
    except BulkLoadError as exc:
        session.rollback()
        raise FieldError("file" if source.startswith("csv") else "numbers", str(exc)) from None
    except UnicodeDecodeError as exc:
        session.rollback()
        raise FieldError(
            "file", f"The file is not valid text in this encoding ({exc.reason}); pass `encoding`."
        ) from None
    counts = {
        k: getattr(result, k)
        for k in (
            "read", "inserted", "duplicate_in_input", "already_present", "duplicate_elsewhere",
            "invalid",
        )
    }  # fmt: skip
    audit.record(
        session,
        action="bulk_create",
        user=user,
        entity_type="project",
        entity_id=project_id,
        changes={
            "source": source,
            "provider_id": provider_id,
            "geo_id": geo_id,
            "load_id": result.load_id,
            **counts,
            "on_dnc": result.on_dnc,
        },  # fmt: skip
        client=client,
    )
    session.commit()
    for outcome, n in counts.items():
        IMPORT_ROWS.labels(outcome).inc(n)
    out = BulkCreateOut(
        project_id=project_id,
        load_id=result.load_id,
        # public(): a cross-project duplicate says only "already in another project".
        rejects=[r.public() for r in result.rejects],
        seconds=round(result.seconds, 3),
        on_dnc=result.on_dnc,
        **counts,
    )
    return out.model_dump()


def _csv_chunks(raw: IO[bytes], encoding: str) -> Iterator[RowChunk]:
    """Stream a CSV upload as RowChunks of at most CSV_CHUNK_ROWS rows (memory stays flat)."""
    named = encoding  # as the caller gave it, for messages
    if encoding.lower().replace("_", "-") in ("utf-8", "utf8"):
        encoding = "utf-8-sig"  # Excel's BOM
    raw.seek(0)
    clean = csv_rows.is_clean(raw, encoding)
    text = csv_rows.open_text(raw, encoding)
    try:
        header_line = text.readline(csv_rows.MAX_CELL + 1)  # bounded: a 1 GB "line" is no header
    except UnicodeError as exc:  # e.g. "UTF-16 stream does not start with BOM"
        message = f"line 1: not {named} text ({exc}); pass the file's `encoding`"
        raise BulkLoadError(message) from None
    if not header_line.strip():
        raise BulkLoadError("the file is empty; expected a header line with a phone column")
    if len(header_line) > csv_rows.MAX_CELL:
        raise BulkLoadError(f"line 1: the header is longer than {csv_rows.MAX_CELL} characters")
    try:
        csv_rows.check_line(header_line, 1, named)
    except csv_rows.CsvInputError as exc:
        raise _input_error(exc, named) from None
    delimiter = max((",", ";", "\t"), key=header_line.count)
    header = next(csv.reader([header_line], delimiter=delimiter))
    names = [h.strip() for h in header]
    lowered = [n.lower() for n in names]
    phone_col = next((lowered.index(a) for a in PHONE_COLUMNS if a in lowered), None)
    if phone_col is None:
        raise BulkLoadError(
            f"no phone column in the header {names!r}; name it one of: {', '.join(PHONE_COLUMNS)}"
        )
    extra = [(i, n) for i, n in enumerate(names) if i != phone_col and n]
    records = csv_rows.read_records(
        text, delimiter, encoding=named, first_line=2, strict=True, clean=clean
    )
    phones: list[object] = []
    lines: list[int] = []
    attrs: list[dict[str, Any] | None] = []
    try:
        for start, row in records:
            if not isinstance(row, list):  # a NUL-bearing row: rejected alone, with its reason
                phones.append(row)
                lines.append(start)
                attrs.append(None)
            elif row and any(cell.strip() for cell in row):  # else a blank line
                phones.append(row[phone_col] if phone_col < len(row) else None)
                lines.append(start)
                found = {n: row[i] for i, n in extra if i < len(row) and row[i].strip()}
                for i in range(len(header), len(row)):
                    if row[i].strip():
                        found[f"column_{i + 1}"] = row[i]
                attrs.append(found or None)
            if len(phones) >= CSV_CHUNK_ROWS:
                yield RowChunk(phones, lines, attrs)
                phones, lines, attrs = [], [], []
    except csv_rows.CsvInputError as exc:
        raise _input_error(exc, named) from None
    if phones:
        yield RowChunk(phones, lines, attrs)


def _input_error(exc: csv_rows.CsvInputError, encoding: str) -> BulkLoadError:
    """-> the loader's error, which the endpoint answers as a 400 on `file`."""
    if exc.undecodable:
        return BulkLoadError(f"{exc}; the file is not {encoding}: pass its `encoding`")
    return BulkLoadError(str(exc))
