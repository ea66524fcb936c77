"""A small, hand-checkable base: five projects (mixed, empty, all-new, deleted, all-success),
three providers, three geos and a day's worth of SoftPhone events. The expected figures in the
tests are computed by hand from the comments here."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from sqlalchemy import Engine, text


def ts(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


@dataclass
class Ids:
    mixed: int
    empty: int
    all_new: int
    deleted: int
    all_success: int
    prov_a: int
    prov_b: int
    prov_c: int
    geo_x: int
    geo_y: int
    geo_z: int


def seed(engine: Engine) -> Ids:
    with engine.begin() as conn:

        def one(sql: str, **params: object) -> int:
            return int(conn.execute(text(sql + " RETURNING id"), params).scalar_one())

        def project(code: str, deleted: bool = False) -> int:
            if deleted:
                return one(
                    "INSERT INTO projects (code, name, status, is_deleted, deleted_at)"
                    " VALUES (:c, :c, 'deleted', true, now())",
                    c=code,
                )
            return one("INSERT INTO projects (code, name) VALUES (:c, :c)", c=code)

        ids = Ids(
            mixed=project("mixed"),
            empty=project("empty"),
            all_new=project("all-new"),
            deleted=project("gone", deleted=True),
            all_success=project("all-success"),
            prov_a=one("INSERT INTO providers (code, name) VALUES ('a', 'A')"),
            prov_b=one("INSERT INTO providers (code, name) VALUES ('b', 'B')"),
            prov_c=one("INSERT INTO providers (code, name) VALUES ('c', 'C')"),  # no numbers
            geo_x=one("INSERT INTO geo (country_code, city) VALUES ('RU', 'X')"),
            geo_y=one("INSERT INTO geo (country_code, city) VALUES ('RU', 'Y')"),
            geo_z=one("INSERT INTO geo (country_code, city) VALUES ('RU', 'Z')"),  # no numbers
        )
        a, b, x, y = ids.prov_a, ids.prov_b, ids.geo_x, ids.geo_y
        numbers = [
            # project, provider, geo, status, attempts, last call
            (ids.mixed, a, x, "new", 0, None),
            (ids.mixed, a, y, "new", 0, None),
            (ids.mixed, a, x, "in_progress", 1, "2024-05-01T10:00:00+00:00"),
            (ids.mixed, a, x, "success", 2, "2024-05-02T09:00:00+00:00"),
            (ids.mixed, b, x, "success", 1, "2024-05-02T12:00:00+00:00"),
            (ids.mixed, b, y, "success", 3, "2024-05-03T08:00:00+00:00"),
            (ids.mixed, b, None, "failed", 2, "2024-05-01T15:00:00+00:00"),
            (ids.mixed, None, y, "failed", 1, "2024-05-01T16:00:00+00:00"),
            (ids.mixed, a, x, "no_answer", 4, "2024-05-02T18:00:00+00:00"),
            *[(ids.all_new, a, x, "new", 0, None)] * 4,
            (ids.deleted, a, x, "success", 5, "2024-06-01T00:00:00+00:00"),
            (ids.deleted, a, x, "success", 5, "2024-06-01T00:00:00+00:00"),
            (ids.all_success, b, x, "success", 1, "2024-05-01T11:00:00+00:00"),
        ]
        for i, (project_id, provider, geo, status, attempts, last) in enumerate(numbers):
            conn.execute(
                text(
                    "INSERT INTO phone_numbers (phone_number, project_id, provider_id, geo_id,"
                    " status, call_attempts, last_call_at)"
                    " VALUES (:p, :project, :provider, :geo, :status, :attempts, :last)"
                ),
                {
                    "p": f"+7916{i:07d}",
                    "project": project_id,
                    "provider": provider,
                    "geo": geo,
                    "status": status,
                    "attempts": attempts,
                    "last": ts(last) if last else None,
                },
            )
        events = [
            # project, type, result status, occurred at
            (ids.mixed, "call_started", None, "2024-05-01T09:00:00+00:00"),
            (ids.mixed, "call_started", None, "2024-05-01T23:30:00+00:00"),
            (ids.mixed, "call_ended", None, "2024-05-01T09:05:00+00:00"),
            (ids.mixed, "call_ended", None, "2024-05-02T00:10:00+03:00"),  # 21:10 UTC on the 1st
            (ids.mixed, "call_result", "success", "2024-05-01T09:06:00+00:00"),
            (ids.mixed, "call_result", "failed", "2024-05-01T12:00:00+00:00"),
            (ids.mixed, "call_started", None, "2024-05-02T10:00:00+00:00"),
            (ids.mixed, "call_ended", None, "2024-05-02T10:03:00+00:00"),
            (ids.mixed, "call_result", "no_answer", "2024-05-02T10:04:00+00:00"),
            (ids.mixed, "call_result", "weird", "2024-05-02T10:05:00+00:00"),
            (ids.all_success, "call_result", "success", "2024-05-02T11:00:00+00:00"),
            (ids.deleted, "call_result", "success", "2024-05-02T11:00:00+00:00"),  # not counted
            (None, "call_result", "success", "2024-05-02T11:00:00+00:00"),  # unmatched
        ]
        for i, (project_id, event_type, status, occurred) in enumerate(events):
            payload = {"status": status} if status else {}
            conn.execute(
                text(
                    "INSERT INTO call_events (event_id, event_type, phone_number, project_id,"
                    " matched, payload, occurred_at)"
                    " VALUES (:e, :t, '+79160000000', :project, :m, CAST(:payload AS jsonb), :at)"
                ),
                {
                    "e": f"ev-{i}",
                    "t": event_type,
                    "project": project_id,
                    "m": project_id is not None,
                    "payload": json.dumps(payload),
                    "at": ts(occurred),
                },
            )
    return ids
