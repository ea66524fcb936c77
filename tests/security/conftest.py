"""Security tests use the API fixtures of tests/api (the real app on the test database, users of
each role with tokens; tests/security/live.py serves the app over real HTTP)."""

from tests.api.conftest import (  # noqa: F401  (fixtures)
    admin,
    app,
    client,
    manager,
    other_manager,
    settings,
)
