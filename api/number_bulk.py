"""POST /api/phone-numbers/bulk/: JSON (up to 100,000 numbers) or a CSV upload, both through
the COPY bulk loader (models/bulk.py) in the request's own transaction, with one audit row.

CSV: the first line is a header; the delimiter is whichever of `,` `;` tab occurs most in it.
The phone column is found by name (PHONE_COLUMNS, case-insensitive); every other named column
becomes an attribute of the number (empty cells left out); cells beyond the header are kept as
`column_N`. Reject line numbers are the file's line numbers (the header is line 1).
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator
from typing import IO, Any

import phonenumbers
from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from api import audit
from api.deps import ClientDep, CurrentUser, SessionDep, SettingsDep, UserDep
from api.errors import FieldError
from api.observability import IMPORT_ROWS
from api.schemas.numbers import BulkCreateIn, BulkCreateOut
from api.scope import get_project_or_404
from models.bulk import BulkLoadError, RowChunk, chunked, load_numbers
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
    encoding: str = "utf-8"


def _field_errors(exc: ValidationError) -> FieldError:
    errors: dict[str, list[str]] = {}
    for err in exc.errors():
        name = ".".join(str(p) for p in err.get("loc", ())) or "non_field_errors"
        message = "Malformed JSON body." if err.get("type") == "json_invalid" else err["msg"]
        errors.setdefault(name, []).append(message)
    return FieldError(errors)


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
    phones = [n if isinstance(n, str) else n.phone_number for n in body.numbers]
    attrs = [None if isinstance(n, str) else n.attributes for n in body.numbers]
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
    from api.routers.numbers import check_refs  # the router imports this module

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
        )
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
        for k in ("read", "inserted", "duplicate_in_input", "already_present", "invalid")
    }
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
        rejects=[r.__dict__ for r in result.rejects],
        seconds=round(result.seconds, 3),
        on_dnc=result.on_dnc,
        **counts,
    )
    return out.model_dump()


def _csv_chunks(raw: IO[bytes], encoding: str) -> Iterator[RowChunk]:
    """Stream a CSV upload as RowChunks of at most CSV_CHUNK_ROWS rows (memory stays flat)."""
    if encoding.lower().replace("_", "-") in ("utf-8", "utf8"):
        encoding = "utf-8-sig"  # Excel's BOM
    raw.seek(0)
    text = io.TextIOWrapper(raw, encoding=encoding, newline="")
    header_line = text.readline()
    if not header_line.strip():
        raise BulkLoadError("the file is empty; expected a header line with a phone column")
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
    reader = csv.reader(text, delimiter=delimiter)
    phones: list[str | None] = []
    lines: list[int] = []
    attrs: list[dict[str, Any] | None] = []
    line = 1
    for row in reader:
        start, line = line + 1, reader.line_num + 1  # reader counts from the header's end
        if not row or not any(cell.strip() for cell in row):
            continue  # blank line
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
    if phones:
        yield RowChunk(phones, lines, attrs)
