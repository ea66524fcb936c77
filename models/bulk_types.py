"""The bulk loader's vocabulary (models/bulk.py): its errors, input chunks, rejects and result.

Kept apart from the loader so its stages (models/bulk_stage.py, models/load_dedupe.py) and the
do-not-call bulk path (models/dialing/dnc.py) share them without importing the loader itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

# What any reader of a cross-project duplicate sees; only the file's reject report (read by data
# engineers and admins) names the other project (Reject.report_reason).
ELSEWHERE_REASON = "already in another project"


class BulkLoadError(ValueError):
    """The load cannot run (unknown/deleted project, unknown provider/geo, malformed chunk)."""


class BulkLoadTimeout(BulkLoadError):
    """The load waited longer than the lock timeout, or ran past the statement timeout, and was
    rolled back whole. Nothing is wrong with the input: a later attempt may succeed."""

    transient = True


@dataclass
class RowChunk:
    """One bounded chunk of input rows."""

    phones: Sequence[object]  # raw values as read (str/int/float/None)
    lines: Sequence[int] | None = None  # source line numbers (default: running count from 1)
    attributes: Sequence[dict[str, Any] | None] | None = None  # extra columns -> JSONB


@dataclass
class Reject:
    line: int
    raw: str
    reason: str
    # A duplicate_elsewhere row: the code of the project that has the number. Never sent to a
    # manager; as_dict() and the API leave it out.
    other_project: str | None = field(default=None, repr=False)

    @property
    def report_reason(self) -> str:
        """The reason as the file's reject report words it (names the other project)."""
        if self.other_project is None:
            return self.reason
        return f"already in project {self.other_project}"

    def public(self) -> dict[str, Any]:
        return {"line": self.line, "raw": self.raw, "reason": self.reason}


@dataclass
class LoadResult:
    read: int = 0
    inserted: int = 0
    duplicate_in_input: int = 0
    already_present: int = 0
    invalid: int = 0
    on_dnc: int = 0  # distinct valid numbers of the input on an active do-not-call entry
    rejects: list[Reject] = field(default_factory=list)  # the first `reject_limit`
    seconds: float = 0.0
    # Skipped by the project's dedupe scope: present in another project (or called recently).
    duplicate_elsewhere: int = 0
    load_id: int | None = None  # the number_loads row, when the load was recorded

    @property
    def rows_per_second(self) -> float:
        return self.read / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["rejects"] = [r.public() for r in self.rejects]
        out["seconds"] = round(self.seconds, 3)
        out["rows_per_second"] = round(self.rows_per_second, 1)
        return out


@dataclass
class RejectSink:
    """Where a load's rejected lines go: every one to `on_reject` (the file's full report), the
    first `limit` kept in the result (what the API answers)."""

    result: LoadResult
    limit: int
    on_reject: Callable[[Reject], None] | None = None

    def __call__(self, reject: Reject) -> None:
        if self.on_reject is not None:
            self.on_reject(reject)
        if len(self.result.rejects) < self.limit:
            self.result.rejects.append(reject)
