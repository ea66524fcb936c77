"""Do-not-call lists: global entries (project_id NULL, the whole call center) and per-project
entries, each with reason, source, optional expiry and who added it.

Bulk additions go through the loader's pieces (`RowChunk` input, `normalize_many`, `Reject`
lines) and one set-based upsert per chunk; re-listing a number updates its reason, source and
expiry. Every change writes its audit row in the same transaction. A listed number is never
callable (models/dialing/eligibility.py `dnc_listed`), is left out of exports unless asked, is
flagged in the pop-up and counted (`on_dnc`) by imports. A SoftPhone `call_result` whose
`result_data` has `"opt_out": true` lists the number for its project at once
(`record_opt_outs`, called by models/call_events.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from psycopg import sql
from sqlalchemy import Connection, text

from models.bulk_types import Reject, RowChunk
from models.phones import normalize_many

OPT_OUT_KEY = "opt_out"  # in a call_result's result_data: true lists the number
SOURCE_SOFTPHONE = "softphone"
MAX_REASON = 1000

# The loader's `on_dnc` figure (models/bulk_insert.py): of a load's distinct valid numbers (its
# `firsts` CTE), those on an active entry, global or of the load's project %(project)s. Counted
# whether or not they were inserted: the import reports what the file held.
LOADED_ON_DNC = sql.SQL(
    """
    SELECT count(*) FROM firsts f WHERE EXISTS (
        SELECT 1 FROM dnc_entries d
        WHERE d.phone_number = f.phone
          AND (d.project_id IS NULL OR d.project_id = %(project)s)
          AND (d.expires_at IS NULL OR d.expires_at > now()))"""
)


@dataclass
class DncBulkResult:
    read: int = 0
    added: int = 0
    updated: int = 0
    invalid: int = 0
    rejects: list[Reject] = field(default_factory=list)


_UPSERT = text(
    """
WITH input AS (
    SELECT DISTINCT ON (phone) phone
    FROM unnest(CAST(:phones AS text[])) AS t(phone) ORDER BY phone
), up AS (
    INSERT INTO dnc_entries (project_id, phone_number, reason, source, expires_at, added_by)
    SELECT :project_id, phone, :reason, :source, :expires_at, :added_by FROM input
    ON CONFLICT ON CONSTRAINT uq_dnc_entries_phone_project DO UPDATE
        SET reason = EXCLUDED.reason, source = EXCLUDED.source,
            expires_at = EXCLUDED.expires_at, added_by = EXCLUDED.added_by
        WHERE (dnc_entries.reason, dnc_entries.source, dnc_entries.expires_at)
              IS DISTINCT FROM (EXCLUDED.reason, EXCLUDED.source, EXCLUDED.expires_at)
    RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM up
"""
)


def add_bulk(
    conn: Connection,
    *,
    project_id: int | None,
    chunks: Iterable[RowChunk],
    reason: str,
    source: str,
    expires_at: dt.datetime | None,
    added_by: int | None,
    region: str = "RU",
    reject_limit: int = 1000,
) -> DncBulkResult:
    """List every valid number of `chunks` (in the caller's transaction: all or nothing)."""
    result = DncBulkResult()
    for chunk in chunks:
        phones, reasons = normalize_many(list(chunk.phones), region)
        lines = list(chunk.lines) if chunk.lines is not None else range(1, len(phones) + 1)
        valid = [p for p in phones if p]
        for p, why, line, raw in zip(phones, reasons, lines, chunk.phones, strict=True):
            if p is None:
                result.invalid += 1
                if len(result.rejects) < reject_limit:
                    result.rejects.append(Reject(int(line), "" if raw is None else str(raw),
                                                 why or "invalid"))  # fmt: skip
        result.read += len(phones)
        if valid:
            added, updated = conn.execute(
                _UPSERT,
                {"phones": valid, "project_id": project_id, "reason": reason, "source": source,
                 "expires_at": expires_at, "added_by": added_by},
            ).one()  # fmt: skip
            result.added += int(added)
            result.updated += int(updated)
    return result


# The opt-out hook: one statement lists the numbers of the new opt-out results and audits it.
_OPT_OUT = text(
    """
WITH opt AS (
    SELECT DISTINCT ON (pn.phone_number, pn.project_id)
           pn.phone_number, pn.project_id, e.event_id
    FROM call_events e
    JOIN phone_numbers pn ON pn.id = e.phone_number_id
    WHERE e.event_id = ANY(CAST(:event_ids AS text[])) AND e.event_type = 'call_result'
      AND jsonb_typeof(e.payload -> 'result_data') = 'object'
      AND (e.payload -> 'result_data' -> 'opt_out') = 'true'::jsonb
    ORDER BY pn.phone_number, pn.project_id, e.event_id
), listed AS (
    INSERT INTO dnc_entries (project_id, phone_number, reason, source)
    SELECT project_id, phone_number, 'opted out on a call (event ' || event_id || ')',
           :source
    FROM opt
    ON CONFLICT ON CONSTRAINT uq_dnc_entries_phone_project DO UPDATE
        SET expires_at = NULL, reason = EXCLUDED.reason, source = EXCLUDED.source
        WHERE dnc_entries.expires_at IS NOT NULL  -- an expiring entry becomes permanent
    RETURNING id, project_id, phone_number, reason
), audited AS (
    INSERT INTO audit_log (actor, action, entity_type, entity_id, changes)
    SELECT :actor, 'dnc_opt_out', 'dnc_entry', id,
           jsonb_build_object('phone_number', jsonb_build_array(NULL, phone_number),
                              'project_id', jsonb_build_array(NULL, project_id),
                              'reason', jsonb_build_array(NULL, reason))
    FROM listed
    RETURNING 1
)
SELECT count(*) FROM audited
"""
)


def may_opt_out(payload: str) -> bool:
    """Whether an event's JSON text can carry `"opt_out"`: the word itself, or a \\u escape
    (JSON may spell a key with escapes). False means it surely does not, so the webhook skips
    the opt-out statement for the vast majority of results (a round trip per group)."""
    return "opt_out" in payload or "\\u" in payload


def record_opt_outs(conn: Connection, event_ids: list[str], actor: str) -> int:
    """List, for their projects, the numbers of these (new, matched) call_result events that
    carry `"opt_out": true`; -> entries added or made permanent."""
    if not event_ids:
        return 0
    return int(
        conn.execute(
            _OPT_OUT, {"event_ids": event_ids, "source": SOURCE_SOFTPHONE, "actor": actor}
        ).scalar_one()
    )
