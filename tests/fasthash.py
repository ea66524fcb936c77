"""Cheap argon2id parameters for in-process tests. The production defaults (64 MiB, 3 passes)
cost about 0.4 s per hash and per login on this machine, which would dominate the suite; the
algorithm and the code paths stay the same. tests/conftest.py makes it autouse for the whole
suite; the CLI tests run in a subprocess and keep the real parameters."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

import api.security


def _cheap() -> PasswordHash:
    return PasswordHash((Argon2Hasher(time_cost=1, memory_cost=1024, parallelism=1),))


@pytest.fixture(autouse=True)
def cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(PasswordHash, "recommended", classmethod(lambda cls: _cheap()))
    monkeypatch.setattr(api.security, "_hasher", _cheap())
    yield
