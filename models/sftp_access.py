"""Who may deliver numbers to a project: the one rule every import path obeys.

The API's import request, the inbox sensor, the durable-request sensor and a partition
materialised in the Dagster UI all ask `import_refusal`: the project is live; a provider, when
there is one, exists, is active and is linked to the project (project_providers).
"""

from __future__ import annotations

import psycopg


def live_project(conn: psycopg.Connection, *, code: str | None = None, id: int | None = None):
    """(id, code) of a project that exists and is not deleted, else None."""
    column, value = ("code", code) if code is not None else ("id", id)
    row = conn.execute(
        f"SELECT id, code FROM projects WHERE {column} = %s AND NOT is_deleted", (value,)
    ).fetchone()
    return (int(row[0]), str(row[1])) if row else None


def provider_by_code(conn: psycopg.Connection, code: str) -> int | None:
    row = conn.execute("SELECT id FROM providers WHERE code = %s", (code,)).fetchone()
    return int(row[0]) if row else None


def import_refusal(
    conn: psycopg.Connection, project_id: int, provider_id: int | None
) -> str | None:
    """Why numbers may not be imported into this project from this provider, else None.

    The one rule of every import path (API request, inbox file, UI materialisation): the
    provider, when there is one, exists, is active and is linked to the project.
    """
    if provider_id is None:
        return None
    row = conn.execute(
        "SELECT p.code, p.status, EXISTS (SELECT 1 FROM project_providers l"
        "  WHERE l.project_id = %s AND l.provider_id = p.id)"
        " FROM providers p WHERE p.id = %s",
        (project_id, provider_id),
    ).fetchone()
    if row is None:
        return f"provider {provider_id} does not exist"
    code, status, linked = row
    if status != "active":
        return f"provider {code!r} is {status}, not active"
    if not linked:
        return f"provider {code!r} is not linked to this project"
    return None
