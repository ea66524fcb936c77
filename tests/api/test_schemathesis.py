"""Property-based conformance: schemathesis generates requests (valid and invalid) from
/api/openapi.json and sends them with an admin token, then with a manager's (whose scope,
403s and 404s take other paths through the same routes). No 5xx, every status documented,
every body matching its schema, malformed input refused, auth enforced. A small budget here,
one test per role so fixtures are set up once; the full run is in docs/api.md ("Fuzzing the
API")."""

from __future__ import annotations

import os
import warnings
from collections import Counter

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

# NUMBASE_FUZZ_EXAMPLES=100 for a deeper local run of the same test.
EXAMPLES = int(os.environ.get("NUMBASE_FUZZ_EXAMPLES", "5"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    ignored_auth,
]
# Logging out would revoke the token the rest of the run uses.
SKIP = {"POST /api/auth/logout/"}
# Failures in routers owned elsewhere, reported as warnings until their owners fix them.
KNOWN_ELSEWHERE: dict[str, str] = {}


@pytest.mark.parametrize("role", ["admin", "manager"])
def test_api_conforms_to_its_schema(app: FastAPI, request, factory, role: str) -> None:  # type: ignore[no-untyped-def]
    actor = request.getfixturevalue(role)
    # Some rows so that generated ids sometimes hit real objects (the manager's own project).
    project = factory.project(members=[actor.user])
    factory.schedule(project)
    factory.number(project)
    factory.provider()
    factory.geo()
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", app)
    # The Authorization header is not a generated parameter (negative cases would spend their
    # budget on "no token" 401s): the provider below always sets it, and `ignored_auth` probes
    # each operation without it and with a broken one.
    schema.config.generation.update(with_security_parameters=False)
    token = actor.access

    # The token as schemathesis' own auth: every case carries it, negative cases that drop the
    # Authorization header are judged on what was really sent, and `ignored_auth` knows the
    # credentials are real (it probes without them and with broken ones).
    @schema.auth(refresh_interval=None)
    class _Token:
        def get(self, case, ctx) -> str:  # type: ignore[no-untyped-def]
            return token

        def set(self, case, data: str, ctx) -> None:  # type: ignore[no-untyped-def]
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}

    failures: dict[str, str] = {}
    statuses: Counter[int] = Counter()
    tested = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.label in SKIP:
            continue
        tested += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            def run(case) -> None:  # type: ignore[no-untyped-def]
                response = case.call_and_validate(checks=CHECKS)
                statuses[response.status_code] += 1

            try:
                run()
            except Unsatisfiable:
                pass  # nothing to make invalid (an operation without parameters or body)
            except (
                Exception,
                BaseExceptionGroup,
            ) as exc:  # collect all failures, report at the end
                failures[f"{operation.label} ({mode})"] = str(exc)[:3000]
    assert tested >= 40
    # The token really worked: requests got past authentication (and 2xx answers happened).
    assert sum(n for code, n in statuses.items() if code < 300) >= 20, statuses
    assert statuses[401] * 10 < statuses.total(), statuses
    known = {k: v for k, v in failures.items() if k.rsplit(" (", 1)[0] in KNOWN_ELSEWHERE}
    for label in known:
        warnings.warn(f"known schema failure elsewhere: {label}", stacklevel=1)
    mine = {k: v for k, v in failures.items() if k not in known}
    assert not mine, "\n\n".join(f"{k}:\n{v}" for k, v in mine.items())
