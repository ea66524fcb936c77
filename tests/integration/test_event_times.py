"""Times of events are when they happened, not when their transaction began (migration
0005_clock): a transaction that sleeps between two writes records two distinct times."""

from __future__ import annotations

import datetime as dt
import json

from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from api import audit
from models.call_events import EventIn, store_and_apply
from models.tables import AuditLog, CallEvent, Project

PAUSE = 0.3  # seconds slept inside the transaction


def _pause(conn) -> None:  # noqa: ANN001
    conn.execute(text("SELECT pg_sleep(:s)"), {"s": PAUSE})


def test_audit_rows_of_one_transaction_carry_their_own_times(db: Engine) -> None:
    with Session(db) as session:
        audit.record(session, action="first", actor="system:test")
        session.flush()
        _pause(session)
        audit.record(session, action="second", actor="system:test")
        session.commit()
        first, second = session.scalars(select(AuditLog.created_at).order_by(AuditLog.id)).all()
    assert second - first >= dt.timedelta(seconds=PAUSE * 0.9)


def test_call_events_and_their_audit_rows_are_stamped_when_stored(db: Engine, factory) -> None:
    number = factory.number(factory.project(), "+79161400000")
    at = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)

    def event(event_id: str, kind: str) -> EventIn:
        payload = {"event_id": event_id, "event_type": kind, "status": "no_answer"}
        return EventIn(event_id, kind, number.phone_number, at, json.dumps(payload))

    with db.begin() as conn:
        store_and_apply(conn, [event("t-1", "call_started")])
        _pause(conn)
        store_and_apply(conn, [event("t-2", "call_result")])
    with db.connect() as conn:
        received = (
            conn.execute(select(CallEvent.received_at).order_by(CallEvent.event_id)).scalars().all()
        )
        audited = (
            conn.execute(
                select(AuditLog.created_at)
                .where(AuditLog.action == "softphone_status")
                .order_by(AuditLog.id)
            )
            .scalars()
            .all()
        )
    assert len(received) == 2 and received[1] - received[0] >= dt.timedelta(seconds=PAUSE * 0.9)
    assert len(audited) == 2 and audited[1] - audited[0] >= dt.timedelta(seconds=PAUSE * 0.9)


def test_updated_at_is_when_the_row_changed(db: Engine, factory) -> None:
    one, two = factory.project(), factory.project()
    with db.begin() as conn:
        conn.execute(text("UPDATE projects SET name = 'one!' WHERE id = :i"), {"i": one.id})
        _pause(conn)
        conn.execute(text("UPDATE projects SET name = 'two!' WHERE id = :i"), {"i": two.id})
    with Session(db) as session:
        first = session.get(Project, one.id)
        second = session.get(Project, two.id)
        assert first is not None and second is not None
        assert second.updated_at - first.updated_at >= dt.timedelta(seconds=PAUSE * 0.9)
