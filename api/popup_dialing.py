"""The pop-up's dialing facts (zone, region, operator, DNC, callable now and if not why and
when), added to each card by one small function so the pop-up's own read path stays as it is."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Engine, or_, select

from api.schemas.dialing import DialingCard
from api.schemas.softphone import NumberCard
from models.dialing import policy
from models.dialing.eligibility import load_calendar, load_schedules
from models.tables import DncEntry, PhoneNumber, TimezoneSet


def with_dialing(
    engine: Engine, phone: str, cards: list[NumberCard], now: dt.datetime, settings: Any
) -> list[NumberCard]:
    if not cards:
        return cards
    config = policy.PolicyConfig.from_settings(settings)
    ids = [c.id for c in cards]
    with engine.connect() as conn:
        rows = {
            r.id: r
            for r in conn.execute(
                select(
                    PhoneNumber.id,
                    PhoneNumber.timezone,
                    PhoneNumber.timezone_source,
                    PhoneNumber.region,
                    PhoneNumber.operator,
                    TimezoneSet.zones,
                )
                .outerjoin(TimezoneSet, TimezoneSet.id == PhoneNumber.timezone_set_id)
                .where(PhoneNumber.id.in_(ids))
            )
        }
        listed = {
            r[0]
            for r in conn.execute(
                select(DncEntry.project_id).where(
                    DncEntry.phone_number == phone,
                    or_(DncEntry.expires_at.is_(None), DncEntry.expires_at > now),
                )
            )
        }
        calendar = load_calendar(conn, now)  # type: ignore[arg-type]
        schedules = load_schedules(conn, [c.project.id for c in cards])  # type: ignore[arg-type]
    out = []
    for card in cards:
        row = rows.get(card.id)
        tz = row.timezone if row else None
        cands = list(row.zones) if row is not None and row.zones and not tz else None
        on_dnc = None in listed or card.project.id in listed
        if on_dnc:
            verdict = policy.Verdict(False, policy.REASON_DNC, None)
        else:
            schedule = schedules.get(card.project.id, policy.NO_SCHEDULE)
            verdict = policy.evaluate((tz,) if tz else cands, now, calendar, schedule, config)
        local = None
        if tz:
            local = now.astimezone(policy.zone_info(tz))
        card.dialing = DialingCard(
            timezone=tz,
            timezone_source=row.timezone_source if row else None,
            candidates=cands,
            region=row.region if row else None,
            operator=row.operator if row else None,
            local_time=local,
            dnc=on_dnc,
            callable_now=verdict.callable,
            reason=verdict.reason,
            next_window_opens=verdict.next_open,
        )
        out.append(card)
    return out
