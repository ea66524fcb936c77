"""API fixtures: the real app on the session's test database, users of each role with tokens."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.main import create_app
from models.settings import Settings, load_settings
from models.tables import User

PASSWORD = "correct-horse-battery"
TEST_SETTINGS: dict[str, Any] = {
    "jwt_secret": "test-secret-" + "x" * 40,
    "softphone_webhook_secret": "webhook-secret-for-tests",
    "softphone_api_key": "softphone-service-key-for-tests",
    "login_max_failures": 5,
}


@pytest.fixture
def settings(database_url: str) -> Settings:
    return load_settings(database_url=database_url, **TEST_SETTINGS)


@pytest.fixture
def app(settings: Settings, db: Engine) -> FastAPI:
    return create_app(settings=settings, engine=db)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url="http://testserver") as c:
        yield c


@dataclass
class Actor:
    user: User
    access: str
    refresh: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access}"}


def login(client: TestClient, user: User, password: str = PASSWORD) -> Actor:
    resp = client.post("/api/auth/login/", json={"username": user.username, "password": password})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    return Actor(user=user, access=body["access"], refresh=body["refresh"])


@pytest.fixture
def admin(client: TestClient, factory) -> Actor:  # type: ignore[no-untyped-def]
    return login(client, factory.user(role="admin", password=PASSWORD))


@pytest.fixture
def manager(client: TestClient, factory) -> Actor:  # type: ignore[no-untyped-def]
    return login(client, factory.user(role="manager", password=PASSWORD))


@pytest.fixture
def other_manager(client: TestClient, factory) -> Actor:  # type: ignore[no-untyped-def]
    return login(client, factory.user(role="manager", password=PASSWORD))
