"""Candidate-zone sets of ambiguous numbers, stored once in `timezone_sets` and referenced by id.

The id is a hash of the sorted zone names, so the bulk loader, the back-fill and the registry
compute it without a lookup; `ensure_sets` writes the few sets a load met that the table lacks
(normally none: each set is written the first time it is ever seen)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

import psycopg


@lru_cache(maxsize=4096)
def set_id(zones: tuple[str, ...]) -> int:
    """The signed 64-bit id of a zone set (order-insensitive)."""
    digest = hashlib.sha256(",".join(sorted(set(zones))).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def normalised(zones: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(set(zones)))


def ensure_sets(conn: psycopg.Connection[Any], sets: Mapping[int, tuple[str, ...]]) -> None:
    if not sets:
        return
    ids = list(sets)
    present = {r[0] for r in conn.execute(
        "SELECT id FROM timezone_sets WHERE id = ANY(%s)", (ids,)
    ).fetchall()}  # fmt: skip
    missing = [(i, list(normalised(sets[i]))) for i in ids if i not in present]
    if missing:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO timezone_sets (id, zones) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                missing,
            )


def zones_of(conn: psycopg.Connection[Any], ids: Iterable[int]) -> dict[int, list[str]]:
    wanted = list({i for i in ids if i is not None})
    if not wanted:
        return {}
    rows = conn.execute(
        "SELECT id, zones FROM timezone_sets WHERE id = ANY(%s)", (wanted,)
    ).fetchall()
    return {r[0]: list(r[1]) for r in rows}
