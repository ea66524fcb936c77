"""What `numbase up` does when a part dies: restart it (bounded), or say so loudly and stop.

Two kinds of death:
* a direct child (SFTP server, API, `dagster dev`) exits: its process group is cleared of
  strays (uvicorn workers, Dagster daemons still holding ports) and it is started again, at most
  `MAX_RESTARTS` times in `RESTART_WINDOW` seconds; past that `numbase up` stops everything and
  exits 1 rather than limp along;
* Dagster's code server, a grandchild under `dagster dev`, dies: `dagster dev` itself stays up
  and never starts it again (sensors and runs stop for good). The webserver's GraphQL API
  reports the location unreachable; it is reloaded through the same API, which starts a new
  code server. A location that fails to load for another reason (broken code) is reported once
  per message, not reloaded in a loop.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_RESTARTS = 3
RESTART_WINDOW = 600.0
CODE_CHECK_INTERVAL = 15.0
UNREACHABLE = ("DagsterUserCodeUnreachableError", "Could not reach user code server")

LOCATIONS_QUERY = """{ workspaceOrError { __typename ... on Workspace { locationEntries {
  name locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
RELOAD_MUTATION = """mutation($name: String!) { reloadRepositoryLocation(
  repositoryLocationName: $name) { __typename } }"""


def say(message: str) -> None:
    print(f"numbase: {message}", file=sys.stderr, flush=True)


@dataclass
class RestartBudget:
    """At most `limit` restarts in any `window` seconds."""

    limit: int = MAX_RESTARTS
    window: float = RESTART_WINDOW
    times: deque[float] = field(default_factory=deque)

    def take(self, now: float | None = None) -> int | None:
        """Record a restart; its number in the window, or None when the budget is spent."""
        now = time.monotonic() if now is None else now
        while self.times and now - self.times[0] > self.window:
            self.times.popleft()
        if len(self.times) >= self.limit:
            return None
        self.times.append(now)
        return len(self.times)


def graphql(base_url: str, query: str, variables: dict[str, str] | None = None) -> dict:  # type: ignore[type-arg]
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(
        f"{base_url}/graphql", data=body, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        return json.loads(resp.read())


def broken_locations(base_url: str) -> dict[str, str]:
    """{location name: load error} for the workspace's locations that are not loaded."""
    data = graphql(base_url, LOCATIONS_QUERY)["data"]["workspaceOrError"]
    if data.get("__typename") != "Workspace":
        return {}
    out = {}
    for entry in data["locationEntries"]:
        loaded = entry.get("locationOrLoadError") or {}
        if loaded.get("__typename") == "PythonError":
            out[entry["name"]] = str(loaded.get("message", "")).strip()
    return out


@dataclass
class CodeLocationWatch:
    """Reload unreachable Dagster code locations of `dagster dev` (see the module doc)."""

    base_url: str
    budget: RestartBudget = field(default_factory=RestartBudget)
    interval: float = CODE_CHECK_INTERVAL
    next_check: float = 0.0
    reported: set[str] = field(default_factory=set)
    reload: Callable[[str, str], object] = field(
        default=lambda url, name: graphql(url, RELOAD_MUTATION, {"name": name})
    )

    def check(self, now: float | None = None) -> bool:
        """One look if it is time; False when a location stays dead past the budget."""
        now = time.monotonic() if now is None else now
        if now < self.next_check:
            return True
        self.next_check = now + self.interval
        try:
            broken = broken_locations(self.base_url)
        except (OSError, ValueError, KeyError, TypeError):
            return True  # the webserver itself is busy or restarting: the child check covers it
        for name, error in broken.items():
            if not any(mark in error for mark in UNREACHABLE):
                if error not in self.reported:
                    self.reported.add(error)
                    say(f"Dagster code location {name} does not load: {error}")
                continue
            n = self.budget.take(now)
            if n is None:
                say(
                    f"Dagster code location {name} keeps dying ({self.budget.limit} restarts in "
                    f"{self.budget.window:.0f} s); giving up"
                )
                return False
            say(
                f"Dagster code location {name} is unreachable (its code server died); "
                f"restarting it ({n} of {self.budget.limit})"
            )
            try:
                self.reload(self.base_url, name)
            except OSError as exc:
                say(f"reloading {name} failed: {exc!r}; trying again in {self.interval:.0f} s")
        return True
