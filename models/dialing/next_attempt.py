"""When a number may be dialled again, as SQL: one rule for every statement that records an outcome.

The SoftPhone webhook folds it into the very UPDATE that applies the call's outcome (one new row
version per number and event group, not two: phone_numbers carries a dozen indexes, and a second
UPDATE of the same rows doubled the index work of the webhook, docs/benchmarks.md); a PATCH of
the status and a release with an outcome run it as a statement of its own after their change
(models/dialing/queue.py `reschedule`). Both read the *new* status, result data and last call.

The rule: `success` is never due again; `new` / `in_progress` (a call ended without a result yet)
wait the project's minimum gap after the last call; a final outcome of the project's rules is
never due (NULL: the eligibility predicate excludes it by its outcome, so a later change of the
rules applies at once); any other outcome waits its retry delay from now, and at least the gap.
"""

from __future__ import annotations

from models.dialing.queue_rules import DEFAULT_OUTCOMES_JSON, DEFAULTS, OUTCOMES

# Bound parameters every statement using these fragments passes (see `params`).
PARAMS = {"default_gap": DEFAULTS.min_gap_seconds, "default_outcomes": DEFAULT_OUTCOMES_JSON}

_OUTCOME_LIST = ", ".join(f"'{o}'" for o in OUTCOMES)


def gap_sql(rules: str) -> str:
    """The minimum gap in seconds; `rules` is the alias of a LEFT JOINed project_dialing_rules."""
    return f"coalesce({rules}.min_gap_seconds, :default_gap)"


def rule_sql(status: str, result_data: str, rules: str) -> str:
    """The outcome rule (JSON) that applies to a number with this status and result data: the
    finer `result_data.outcome` for a no_answer/failed number, else its status."""
    return (
        f"(CAST(:default_outcomes AS jsonb) || coalesce({rules}.outcomes, '{{}}'::jsonb)) -> "
        f"(CASE WHEN {status} IN ('no_answer', 'failed') "
        f"AND {result_data}->>'outcome' IN ({_OUTCOME_LIST}) "
        f"THEN {result_data}->>'outcome' ELSE {status} END)"
    )


def next_attempt_sql(status: str, last_call_at: str, rule: str, gap: str) -> str:
    """`next_attempt_at` for a number with this (new) status and last call, given its rule
    (`rule_sql`) and gap (`gap_sql`) expressions."""
    return f"""CASE
        WHEN {status} = 'success' THEN NULL
        WHEN {status} IN ('new', 'in_progress') OR {rule} IS NULL
            THEN {last_call_at} + make_interval(secs => {gap})
        WHEN coalesce(({rule}->>'final')::boolean, false) THEN NULL
        ELSE greatest(
            now() + make_interval(secs => coalesce(({rule}->>'retry_seconds')::int, 0)),
            {last_call_at} + make_interval(secs => {gap}))
    END"""
