"""Back-fill of the stored time zone, region and operator of existing numbers.

A back-fill is a `timezone_backfills` row walking `phone_numbers` by id in bounded batches; each
batch is one short transaction that updates only the rows whose values change and moves the
row's `last_id` forward, so a run stopped at any point (killed, or told to stop after N batches)
resumes where the last committed batch ended, and no long UPDATE ever holds the table.
Started by a sensor after every registry load and geo change (`needs_backfill`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from models.dialing.resolve import current_index, is_zone, stage_fragments
from models.dialing.zonesets import ensure_sets

DEFAULT_BATCH = 10_000


@dataclass
class BatchResult:
    backfill_id: int
    rows_seen: int
    rows_changed: int
    last_id: int
    finished: bool


def open_backfill(conn: psycopg.Connection[Any]) -> int:
    """The unfinished back-fill, else a new one for the current registry load."""
    with conn.transaction():
        # One opener at a time: two runners never start two back-fills side by side.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('numbase:timezone_backfill'))")
        row = conn.execute(
            "SELECT id FROM timezone_backfills WHERE finished_at IS NULL ORDER BY id LIMIT 1"
        ).fetchone()
        if row is not None:
            return int(row[0])
        load = conn.execute("SELECT max(id) FROM registry_loads").fetchone()
        new = conn.execute(
            "INSERT INTO timezone_backfills (registry_load_id) VALUES (%s) RETURNING id",
            (load[0] if load else None,),
        ).fetchone()
        assert new is not None
        return int(new[0])


def needs_backfill(conn: psycopg.Connection[Any]) -> bool:
    """Whether a back-fill is due: one is open, a registry load is newer than the newest
    finished one, or a geo row changed since that one started (a geo's zone wins)."""
    row = conn.execute(
        """
        WITH last AS (
            SELECT registry_load_id, created_at FROM timezone_backfills
            WHERE finished_at IS NOT NULL ORDER BY id DESC LIMIT 1
        )
        SELECT EXISTS (SELECT 1 FROM timezone_backfills WHERE finished_at IS NULL)
            OR coalesce((SELECT max(id) FROM registry_loads), 0)
               > coalesce((SELECT registry_load_id FROM last), 0)
            OR EXISTS (SELECT 1 FROM geo WHERE updated_at > (SELECT created_at FROM last)
                                            OR created_at > (SELECT created_at FROM last))
        """
    ).fetchone()
    return bool(row and row[0])


def run_key(conn: psycopg.Connection[Any]) -> str:
    """A key that changes with every new back-fill and with an open one's progress, so the
    sensor asks again after a run died half-way, but never twice for the same state."""
    row = conn.execute(
        "SELECT coalesce(max(id), 0), "
        "       (SELECT last_id FROM timezone_backfills WHERE finished_at IS NULL "
        "        ORDER BY id LIMIT 1) "
        "FROM timezone_backfills"
    ).fetchone()
    assert row is not None
    return f"timezone_backfill:{row[0]}:{'new' if row[1] is None else row[1]}"


def run_batch(
    conn: psycopg.Connection[Any], backfill_id: int, batch_size: int = DEFAULT_BATCH
) -> BatchResult:
    """Resolve the next `batch_size` numbers of the back-fill, in one transaction."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    with conn.transaction():
        state = conn.execute(
            "SELECT last_id, finished_at IS NOT NULL FROM timezone_backfills WHERE id = %s "
            "FOR UPDATE",  # a second runner of the same back-fill waits, then continues after
            (backfill_id,),
        ).fetchone()
        if state is None:
            raise ValueError(f"no back-fill {backfill_id}")
        last_id, finished = int(state[0]), bool(state[1])
        if finished:
            return BatchResult(backfill_id, 0, 0, last_id, True)
        index = current_index(conn)
        rows = conn.execute(
            "SELECT p.id, p.phone_number, g.timezone FROM phone_numbers p "
            "LEFT JOIN geo g ON g.id = p.geo_id WHERE p.id > %s ORDER BY p.id LIMIT %s",
            (last_id, batch_size),
        ).fetchall()
        if not rows:
            conn.execute(
                "UPDATE timezone_backfills SET finished_at = now() WHERE id = %s", (backfill_id,)
            )
            return BatchResult(backfill_id, 0, 0, last_id, True)
        changed = _apply(conn, rows, index)
        new_last = int(rows[-1][0])
        conn.execute(
            "UPDATE timezone_backfills SET last_id = %s, rows_done = rows_done + %s WHERE id = %s",
            (new_last, len(rows), backfill_id),
        )
    return BatchResult(backfill_id, len(rows), changed, new_last, False)


def _apply(conn: psycopg.Connection[Any], rows: list[Any], index: Any) -> int:
    sets: dict[int, tuple[str, ...]] = {}
    frags = stage_fragments([r[1] for r in rows], index, None, sets)
    ids, range_ids, zones, sources, set_ids = [], [], [], [], []
    for (pid, _phone, geo_tz), frag in zip(rows, frags, strict=True):
        rid, tz, source, sid = frag.split("\t")
        if is_zone(geo_tz):  # an explicit geo wins; region/operator still from the registry
            tz, source, sid = geo_tz, "geo", "\\N"
        ids.append(pid)
        range_ids.append(None if rid == "\\N" else int(rid))
        zones.append(None if tz == "\\N" else tz)
        sources.append(source)
        set_ids.append(None if sid == "\\N" else int(sid))
    ensure_sets(conn, sets)
    cur = conn.execute(
        """
        UPDATE phone_numbers p
        SET timezone = v.tz, timezone_source = v.source, timezone_set_id = v.set_id,
            region = r.region, operator = r.operator
        FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::text[], %s::bigint[])
             AS v(id, range_id, tz, source, set_id)
        LEFT JOIN numbering_ranges r ON r.id = v.range_id
        WHERE p.id = v.id
          AND (p.timezone, p.timezone_source, p.timezone_set_id, p.region, p.operator)
              IS DISTINCT FROM (v.tz, v.source, v.set_id, r.region, r.operator)
        """,
        (ids, range_ids, zones, sources, set_ids),
    )
    return cur.rowcount
