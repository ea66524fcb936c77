"""The restart budget of `numbase up` (the restarts themselves: tests/e2e/test_recovery.py)."""

from __future__ import annotations

from cli.supervise import RestartBudget


def test_restarts_are_bounded_within_the_window_and_forgiven_after_it() -> None:
    budget = RestartBudget(limit=3, window=600.0)
    assert [budget.take(t) for t in (0.0, 10.0, 20.0)] == [1, 2, 3]
    assert budget.take(30.0) is None  # a fourth death within 10 minutes: give up
    assert budget.take(605.0) == 3  # the first restart has left the window
    assert budget.take(1300.0) == 1
