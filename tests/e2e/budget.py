"""Time budgets for the end-to-end tests.

Each step a test waits for (a part coming up, a Dagster run finishing, a process stopping) has
its own limit, and the limits plus a reserve for teardown add up to no more than the test's own
pytest timeout (`fits` checks that at import). Every wait polls and is also cut to what is left
of the test's time, so on a slow machine the test fails with the name of the wait that ran out
and how long every earlier step took, not with pytest-timeout's thread dump.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fits(timeout: float, limits: dict[str, float], reserve: float) -> float:
    """The test's pytest timeout, if its limits and reserve fit inside it (else fail loudly)."""
    needed = sum(limits.values()) + reserve
    if needed > timeout:
        raise ValueError(
            f"limits {limits} + reserve {reserve} s = {needed} s > timeout {timeout} s"
        )
    return timeout


class Budget:
    def __init__(self, timeout: float, limits: dict[str, float], reserve: float) -> None:
        fits(timeout, limits, reserve)
        self.timeout, self.limits, self.reserve = timeout, limits, reserve
        self.started = time.monotonic()
        self.took: dict[str, float] = {}
        self.context: Callable[[], str] = lambda: ""  # e.g. the tail of the platform's log

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def limit(self, name: str) -> float:
        """Seconds step `name` may take: its own limit, cut to what the test has left."""
        left = self.timeout - self.reserve - self.elapsed()
        return max(0.0, min(self.limits[name], left))

    def poll(
        self,
        name: str,
        probe: Callable[[], Any],
        *,
        every: float = 0.5,
        retry_on: tuple[type[BaseException], ...] = (OSError,),
        describe: Callable[[Any], str] = repr,
    ) -> Any:
        """probe() until it returns something truthy; an exception in retry_on counts as 'not
        yet' (a part still starting), any other one fails the test as it is. describe(last)
        goes into the failure message."""
        limit = self.limit(name)
        start = time.monotonic()
        deadline = start + limit
        last: Any = None
        while True:
            try:
                last = probe()
            except retry_on as exc:
                last = exc
            else:
                if last:
                    self.took[name] = time.monotonic() - start
                    return last
            now = time.monotonic()
            if now >= deadline:
                self.fail(name, limit, f"last: {describe(last)}")
            time.sleep(min(every, deadline - now))

    @contextmanager
    def step(self, name: str) -> Iterator[float]:
        """A step bounded by its own timeout (a subprocess call): yields the seconds it may
        take; running past them fails with the step's name."""
        limit = self.limit(name)
        start = time.monotonic()
        try:
            yield limit
        except subprocess.TimeoutExpired as exc:
            self.fail(name, limit, f"{exc}")
        self.took[name] = time.monotonic() - start

    def fail(self, name: str, limit: float, detail: str) -> None:
        cut = " (all the test had left)" if limit < self.limits[name] else ""
        steps = ", ".join(f"{k} {v:.1f} s" for k, v in self.took.items()) or "none"
        pytest.fail(
            f"e2e: {name!r} ran out after {limit:.0f} s{cut}, its limit {self.limits[name]:.0f} s;"
            f" test at {self.elapsed():.0f} s of its {self.timeout:.0f} s; steps done: {steps};"
            f" {detail}\n{self.context()}",
            pytrace=False,
        )

    def report(self) -> str:
        return ", ".join(f"{k} {v:.1f} s" for k, v in self.took.items())
