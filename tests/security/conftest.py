"""The API fixtures (the real app on the test database, users of each role with tokens)."""

from tests.api.conftest import (  # noqa: F401
    admin,
    app,
    client,
    manager,
    other_manager,
    settings,
)
