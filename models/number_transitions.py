"""Allowed status changes of a phone number (the dialling lifecycle).

    new ──────────► in_progress ──► success   (terminal)
     │  ▲               │   │
     │  └───────────────┘   ├─────► failed ──► new   (re-queue after fixing the data)
     │    (released)        │
     │                      └─────► no_answer ──► new / in_progress / success / failed
     └──► success / failed / no_answer   (an outcome reported without a separate "started")

* Setting the status a number already has is always allowed (a no-op).
* `success` is terminal: a converted lead is never dialled again by mistake.
* `failed` may only go back to `new` (someone fixed the number or wants another round).
* `no_answer` is the retry state: back to `new` / `in_progress`, or a final outcome.
* Admins may bypass the table (`force`), e.g. to undo an operator's mistake; the audit row
  records that they did.

The API's PATCH and bulk-update and the SoftPhone webhook all use these rules: the bulk path
turns them into one SQL condition (`sources_for`), the webhook's set-based apply into another
(`allowed_sql`), so no path moves a row along a forbidden edge - a SoftPhone result never turns
a `success` into `failed`, nor a new call reopens a `failed` number that nobody re-queued.
"""

from __future__ import annotations

from types import MappingProxyType

from models.tables import NUMBER_STATUSES

ALLOWED_TRANSITIONS: MappingProxyType[str, frozenset[str]] = MappingProxyType(
    {
        "new": frozenset({"in_progress", "success", "failed", "no_answer"}),
        "in_progress": frozenset({"new", "success", "failed", "no_answer"}),
        "no_answer": frozenset({"new", "in_progress", "success", "failed"}),
        "failed": frozenset({"new"}),
        "success": frozenset(),
    }
)
assert set(ALLOWED_TRANSITIONS) == set(NUMBER_STATUSES)


def can_transition(current: str, target: str) -> bool:
    return current == target or target in ALLOWED_TRANSITIONS.get(current, frozenset())


def sources_for(target: str) -> tuple[str, ...]:
    """Statuses a number may have for `target` to be set (including `target` itself)."""
    return tuple(s for s in NUMBER_STATUSES if can_transition(s, target))


def explain(current: str, target: str) -> str:
    allowed = sorted(ALLOWED_TRANSITIONS.get(current, frozenset()))
    if not allowed:
        return f"status {current!r} is final; it cannot change to {target!r}"
    return f"status cannot change from {current!r} to {target!r}; allowed: {', '.join(allowed)}"


def allowed_sql(current: str, target: str) -> str:
    """SQL true when the status in expression `current` may become the one in `target`.

    Built from ALLOWED_TRANSITIONS (the statuses are constants, not input), for set-based
    updates that must obey the same table as `can_transition`.
    """
    pairs = ", ".join(
        f"('{a}', '{b}')" for a in NUMBER_STATUSES for b in NUMBER_STATUSES if can_transition(a, b)
    )
    return f"(({current}), ({target})) IN ({pairs})"
