"""The end-to-end tests' time limits are consistent: every wait has a limit, and all of them with
the teardown reserve fit in the test's own pytest timeout; a wait that runs out says which."""

from __future__ import annotations

import inspect
import subprocess
import time

import pytest

from tests.e2e import test_platform, test_recovery, test_up
from tests.e2e.budget import Budget, fits


@pytest.mark.parametrize(
    "module", [test_platform, test_recovery, test_up], ids=lambda m: m.__name__
)
def test_each_e2e_test_fits_its_limits_in_its_timeout(module) -> None:  # type: ignore[no-untyped-def]
    tests = [f for n, f in inspect.getmembers(module, inspect.isfunction) if n.startswith("test_")]
    assert tests
    for test in tests:
        timeouts = [m.args[0] for m in getattr(test, "pytestmark", []) if m.name == "timeout"]
        assert timeouts, f"{test.__name__} has no explicit pytest timeout"
        assert sum(module.LIMITS.values()) + module.TEARDOWN_RESERVE <= timeouts[0]


def test_fits_refuses_limits_past_the_timeout() -> None:
    with pytest.raises(ValueError, match="> timeout 10"):
        fits(10.0, {"a": 6.0, "b": 4.0}, reserve=1.0)


def test_a_wait_that_runs_out_names_itself_and_the_steps_before() -> None:
    budget = Budget(10.0, {"start": 1.0, "import": 0.2, "stop": 5.0}, reserve=1.0)
    budget.context = lambda: "LOG TAIL"
    assert budget.poll("start", lambda: "up") == "up"
    started = time.monotonic()
    with pytest.raises(pytest.fail.Exception) as failed:
        budget.poll("import", lambda: None, every=0.05)
    assert 0.2 <= time.monotonic() - started < 2
    message = str(failed.value)
    assert "'import' ran out after 0 s, its limit 0 s" in message
    assert "steps done: start " in message and message.endswith("LOG TAIL")


def test_waits_are_cut_to_what_the_test_has_left() -> None:
    budget = Budget(10.0, {"start": 4.0, "stop": 4.0}, reserve=2.0)
    budget.started -= 7.0  # as if the steps so far had taken 7 s of the 10
    assert budget.limit("stop") == pytest.approx(1.0, abs=0.1)
    with pytest.raises(pytest.fail.Exception, match="all the test had left"), budget.step("stop"):
        raise subprocess.TimeoutExpired("numbase up", 1.0)
