"""The API's reads of stored JSON never fail, whatever another writer (or an older version of
this one) stored: its database connections load json/jsonb with
models.json_limits.load_stored_json, which never raises on valid JSON and never returns a value
nested deeper than the response serializer takes (clipped, as a ClippedJson); integers too long
for Python come back as text. The response schemas (StoredJsonObject) wrap non-objects.

Only the API does this: Dagster code keeps plain json.loads and fails loudly, because a job
must never act on a clipped value.
"""

from __future__ import annotations

from typing import Any

from psycopg.types.json import set_json_loads
from sqlalchemy import Engine, event

from models.json_limits import load_stored_json

_MARK = "numbase_json_reads"


def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    # Once per DBAPI connection (the record's info lives as long as the connection), also for
    # connections the pool opened before the app was created (tests share one engine).
    if not record.info.get(_MARK):
        set_json_loads(load_stored_json, dbapi_connection)
        record.info[_MARK] = True


def install_json_reads(engine: Engine) -> None:
    if not event.contains(engine, "checkout", _on_checkout):
        event.listen(engine, "checkout", _on_checkout)
