"""The API process's cache of dial-queue lease plans (models/dialing/queue_plan.py), and the
dependency that drops it after a write to what the plans are read from (dialing rules, project
schedules, holidays), so this process sees its own change at once; other processes see it
within `NUMBASE_DIAL_QUEUE_PLAN_CACHE_SECONDS`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import Depends, Request

from models.dialing.queue_plan import PlanCache


def plan_cache(state: Any) -> PlanCache:
    # In the State object's own __dict__ (as the queue-state cache): `state.x = ...` would go
    # to Starlette's State._state instead, and a lookup here would miss every time.
    cache: PlanCache | None = state.__dict__.get("dial_queue_plans")
    if cache is None:
        cache = state.__dict__.setdefault(
            "dial_queue_plans", PlanCache(state.settings.dial_queue_plan_cache_seconds)
        )
    return cache


async def _drop_plans_after_write(request: Request) -> AsyncIterator[None]:
    # async: no threadpool hop. Dropped after the handler (its commit) and, should the write
    # fail half-way, regardless: a re-read costs one lease a few milliseconds.
    try:
        yield
    finally:
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            plan_cache(request.app.state).invalidate()


DropPlansAfterWrite = Depends(_drop_plans_after_write)
