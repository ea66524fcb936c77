"""The calling policy's holiday calendar: everyone signed in reads; only admins write.
Every change is audited. A date is a holiday, or a working day (`is_working_day`) when a
weekend day is moved to a working day."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query, Response
from sqlalchemy import select

from api import audit
from api.deps import AdminDep, ClientDep, SessionDep, UserDep
from api.errors import conflict, not_found
from api.queue_plans import DropPlansAfterWrite
from api.schemas.dialing import HolidayIn, HolidayOut
from api.strict_query import StrictQuery
from models.tables import Holiday

router = APIRouter(
    prefix="/api/holidays", tags=["dialing"], dependencies=[StrictQuery, DropPlansAfterWrite]
)
_FIELDS = ("day", "name", "is_working_day")


@router.get("/", response_model=list[HolidayOut], summary="Holidays (a year at most per call)")
def list_holidays(
    session: SessionDep,
    _: UserDep,
    year: Annotated[int | None, Query(ge=1900, le=2200)] = None,
) -> list[Holiday]:
    year = year or dt.datetime.now(dt.UTC).year
    stmt = select(Holiday).where(
        Holiday.day >= dt.date(year, 1, 1), Holiday.day <= dt.date(year, 12, 31)
    )
    return list(session.scalars(stmt.order_by(Holiday.day)))


@router.post("/", response_model=HolidayOut, status_code=201, summary="Add a holiday")
def add_holiday(
    body: HolidayIn, session: SessionDep, admin: AdminDep, client: ClientDep
) -> Holiday:
    if session.get(Holiday, body.day) is not None:
        raise conflict(f"{body.day} is already in the calendar.")
    holiday = Holiday(**body.model_dump())
    session.add(holiday)
    session.flush()
    audit.record(
        session, action="create", user=admin, entity_type="holiday",
        changes={"day": [None, str(body.day)], "name": [None, body.name],
                 "is_working_day": [None, body.is_working_day]},
        client=client,
    )  # fmt: skip
    session.commit()
    session.refresh(holiday)
    return holiday


@router.put("/{day}/", response_model=HolidayOut, summary="Replace a holiday")
def replace_holiday(
    day: dt.date, body: HolidayIn, session: SessionDep, admin: AdminDep, client: ClientDep
) -> Holiday:
    holiday = session.get(Holiday, day, with_for_update=True)
    if holiday is None:
        raise not_found("Holiday not found.")
    if body.day != day:
        raise conflict("day in the body must match the path.")
    changes = {
        f: [getattr(holiday, f), getattr(body, f)]
        for f in ("name", "is_working_day")
        if getattr(holiday, f) != getattr(body, f)
    }
    holiday.name, holiday.is_working_day = body.name, body.is_working_day
    if changes:
        audit.record(session, action="update", user=admin, entity_type="holiday",
                     changes={"day": [str(day), str(day)], **changes}, client=client)  # fmt: skip
    session.commit()
    session.refresh(holiday)
    return holiday


@router.delete("/{day}/", status_code=204, summary="Remove a holiday")
def delete_holiday(
    day: dt.date, session: SessionDep, admin: AdminDep, client: ClientDep
) -> Response:
    holiday = session.get(Holiday, day, with_for_update=True)
    if holiday is None:
        raise not_found("Holiday not found.")
    session.delete(holiday)
    audit.record(session, action="delete", user=admin, entity_type="holiday",
                 changes={"day": [str(day), None], "name": [holiday.name, None]},
                 client=client)  # fmt: skip
    session.commit()
    return Response(status_code=204)
