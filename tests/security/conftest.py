"""Security tests use the API fixtures of tests/api (tests/security/live.py serves the app over
real HTTP)."""

from tests.api.conftest import (  # noqa: F401  (fixtures)
    admin,
    app,
    client,
    manager,
    settings,
)
