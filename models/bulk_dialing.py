"""The bulk loader's dialing stage: each staged number's time zone, region and operator
(models/dialing/resolve.py) ride along in the stage as four COPY fields, resolved in Python per
sub-chunk against the registry read once per load; the candidate zone sets met are written
before the INSERT references them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from models.dialing.resolve import RangeIndex, geo_zone, stage_fragments
from models.dialing.resolve import current_index as current_registry
from models.dialing.zonesets import ensure_sets

# The stage's four dialing fields when the load runs without them (benchmarks only).
NO_DIALING = "\\N\t\\N\t\\N\t\\N"


@dataclass
class Zones:
    """What one load resolves numbers against, and the candidate sets it met."""

    registry: RangeIndex
    geo_zone: str | None
    sets_seen: dict[int, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def read(cls, conn: psycopg.Connection[Any], geo_id: int | None) -> Zones:
        """The current registry (locked until the load's transaction ends) and the geo's zone."""
        return cls(current_registry(conn), geo_zone(conn, geo_id))

    def fields(self, phones: Sequence[str | None]) -> list[str]:
        """Per normalised phone (None: skipped), its four dialing fields as COPY text."""
        return stage_fragments(phones, self.registry, self.geo_zone, self.sets_seen)

    def write_sets(self, conn: psycopg.Connection[Any]) -> None:
        """Store the candidate sets the staged rows name (before the INSERT uses their ids)."""
        ensure_sets(conn, self.sets_seen)


def stage_fields(zones: Zones | None, phones: Sequence[str | None]) -> Sequence[str]:
    """The dialing fields of a sub-chunk; all NULL for a load without dialing (benchmarks)."""
    if zones is None:
        return [NO_DIALING] * len(phones)
    return zones.fields(phones)
