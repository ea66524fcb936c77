"""A project's dial-queue rules: attempt limit, per-outcome recycling, minimum gap, hand-out order.

Outcomes. A call result carries a status (`success | failed | no_answer`); a finer outcome may be
sent as `result_data.outcome` (`busy`, `voicemail`, or `no_answer` / `failed` themselves). The
number's outcome is that finer value when it is one of `OUTCOMES` and the status is `no_answer`
or `failed`, else the status itself. `success` is always final and not configurable.

A project without a `project_dialing_rules` row uses `DEFAULTS`; a stored row always holds every
outcome (the API merges a PATCH into the stored or default rules before saving).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from sqlalchemy.orm import Session

from models.tables import HAND_OUT_ORDERS, ProjectDialingRules

OUTCOMES = ("no_answer", "busy", "voicemail", "failed")
# Statuses a finer outcome may refine (a "busy" on a success would be a contradiction).
REFINABLE_STATUSES = ("no_answer", "failed")
MAX_RETRY_SECONDS = 365 * 24 * 3600


@dataclass(frozen=True)
class OutcomeRule:
    final: bool
    retry_seconds: int

    def as_json(self) -> dict[str, Any]:
        return {"final": self.final, "retry_seconds": self.retry_seconds}


DEFAULT_OUTCOMES: MappingProxyType[str, OutcomeRule] = MappingProxyType(
    {
        "no_answer": OutcomeRule(final=False, retry_seconds=3600),
        "busy": OutcomeRule(final=False, retry_seconds=900),
        "voicemail": OutcomeRule(final=False, retry_seconds=4 * 3600),
        # The lifecycle's `failed` means "bad data" (models/number_transitions.py): final until
        # someone re-queues it, unless a project says a failed call is worth another try.
        "failed": OutcomeRule(final=True, retry_seconds=0),
    }
)


@dataclass(frozen=True)
class Rules:
    max_attempts: int = 5
    min_gap_seconds: int = 600
    hand_out_order: str = "priority_then_oldest"
    outcomes: dict[str, OutcomeRule] = field(default_factory=lambda: dict(DEFAULT_OUTCOMES))
    stored: bool = False  # False: the project has no row, these are the defaults

    def outcomes_json(self) -> dict[str, dict[str, Any]]:
        return {k: v.as_json() for k, v in self.outcomes.items()}

    def is_final(self, outcome: str) -> bool:
        return outcome == "success" or (outcome in self.outcomes and self.outcomes[outcome].final)


DEFAULTS = Rules()
DEFAULT_OUTCOMES_JSON = json.dumps(DEFAULTS.outcomes_json())


def parse_outcomes(raw: Any) -> dict[str, OutcomeRule]:
    """Stored JSON -> rules, defaults for anything missing or malformed (a read never fails)."""
    out = dict(DEFAULT_OUTCOMES)
    if isinstance(raw, dict):
        for key, value in raw.items():
            if key in OUTCOMES and isinstance(value, dict):
                base = out[key]
                final = value.get("final", base.final)
                secs = value.get("retry_seconds", base.retry_seconds)
                if isinstance(final, bool) and isinstance(secs, int) and not isinstance(secs, bool):
                    out[key] = OutcomeRule(final, min(max(secs, 0), MAX_RETRY_SECONDS))
    return out


def from_row(row: ProjectDialingRules | None) -> Rules:
    if row is None:
        return DEFAULTS
    order = row.hand_out_order if row.hand_out_order in HAND_OUT_ORDERS else DEFAULTS.hand_out_order
    return Rules(
        max_attempts=row.max_attempts,
        min_gap_seconds=row.min_gap_seconds,
        hand_out_order=order,
        outcomes=parse_outcomes(row.outcomes),
        stored=True,
    )


def load(session: Session, project_id: int) -> Rules:
    return from_row(session.get(ProjectDialingRules, project_id))


PRIORITY_RANGE = (-1_000_000, 1_000_000)
PRIORITY_REASON = (
    f"priority: must be a whole number from {PRIORITY_RANGE[0]} to {PRIORITY_RANGE[1]}"
)


def priority_problem(value: Any) -> str | None:
    """Why an import's `priority` cell is unusable (None: fine). Whole numbers only, as an int
    or as text (a spreadsheet's 5.0 arrives as 5); an empty cell never reaches here."""
    if isinstance(value, bool):
        return PRIORITY_REASON
    if isinstance(value, str):
        text = value.strip()
        digits = text[1:] if text[:1] in "+-" else text
        if not (digits.isascii() and digits.isdigit() and len(digits) <= 7):
            return PRIORITY_REASON
        value = int(text)
    if not isinstance(value, int) or not PRIORITY_RANGE[0] <= value <= PRIORITY_RANGE[1]:
        return PRIORITY_REASON
    return None
