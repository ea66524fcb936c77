"""The callable summary's counts: per project, numbers by (timezone, candidate set) and how many
of them a do-not-call entry covers at `now`, read from `callable_counts` (kept exact by the
triggers of migration 0009_callable_counts) instead of a scan of the project's numbers.

The triggers only append deltas, so writers never contend on a counter row; `read` sums them
(a few hundred rows per project) and, past `COMPACT_ABOVE` rows, `compact` folds a project's
committed deltas into one row per key. Compaction is exact under concurrency: it deletes only
rows committed before it started and inserts their sum in the same statement; a concurrent
compaction waits for it and then finds those rows gone.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

# Rows of one project above which `read` compacts them (a load appends one row per group it
# touched; a compacted project has one row per key, ~100-300 for a national base).
COMPACT_ABOVE = 2000

_READ = text(
    """
SELECT timezone, timezone_set_id,
       coalesce(sum(numbers) FILTER (WHERE listed_until IS NULL OR listed_until <= :now), 0),
       coalesce(sum(numbers) FILTER (WHERE listed_until > :now), 0),
       count(*)
FROM callable_counts WHERE project_id = :project GROUP BY timezone, timezone_set_id
"""
)

_COMPACT = text(
    """
WITH gone AS (
    DELETE FROM callable_counts WHERE project_id = :project
    RETURNING project_id, timezone, timezone_set_id, listed_until, numbers
)
INSERT INTO callable_counts (project_id, timezone, timezone_set_id, listed_until, numbers)
SELECT project_id, timezone, timezone_set_id, listed_until, sum(numbers) FROM gone
GROUP BY 1, 2, 3, 4 HAVING sum(numbers) <> 0
"""
)


@dataclass(frozen=True)
class GroupCount:
    timezone: str | None
    timezone_set_id: int | None
    free: int  # no active DNC entry covers them at `now`
    listed: int  # an active DNC entry does


def read(session: Session, project_id: int, now: dt.datetime) -> list[GroupCount]:
    """The project's groups with at least one number, at `now` (DNC expiry applied here)."""
    rows = session.execute(_READ, {"project": project_id, "now": now}).all()
    if sum(int(r[4]) for r in rows) > COMPACT_ABOVE:
        compact(session, project_id)
    return [
        GroupCount(tz, sid, int(free), int(listed))
        for tz, sid, free, listed, _ in rows
        if free or listed
    ]


def compact(session: Session, project_id: int) -> None:
    """Fold the project's deltas, in a transaction of its own (committed here: a read request
    must not keep the rows locked, and the summary already holds its figures)."""
    session.commit()
    session.execute(_COMPACT, {"project": project_id})
    session.commit()
