"""Shared pieces of the dialing tests: the registry samples and a psycopg connection."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "registry"
DEF_UTF8 = SAMPLES / "DEF-9xx.csv"
ABC_CP1251 = SAMPLES / "ABC-3xx-4xx.csv"


@pytest.fixture
def conn(db: Any, database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as c:
        yield c


@pytest.fixture
def registry(conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    """The two samples loaded as the current registry."""
    from models.dialing.registry import load_registry

    load_registry(conn, [DEF_UTF8, ABC_CP1251])
    return conn


@pytest.fixture
def postgres_resource(database_url: str):  # type: ignore[no-untyped-def]
    from orchestration.resources import PostgresResource

    return PostgresResource(database_url=database_url)
