"""Settings: defaults, and a missing or malformed variable fails with a message naming it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from models.settings import SettingsError, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("NUMBASE_"):
            monkeypatch.delenv(key)


def test_defaults() -> None:
    s = load_settings()
    assert s.embedded_database and s.local_sftp
    assert s.phone_region == "RU"
    assert s.jwt_access_ttl_seconds == 900 and s.jwt_refresh_ttl_seconds == 7 * 24 * 3600
    assert s.pgdata_dir.name == "pgdata" and s.sftp_root.name == "sftp"


@pytest.mark.parametrize(
    ("var", "value", "named"),
    [
        ("NUMBASE_DATABASE_URL", "mysql://x@y/z", "NUMBASE_DATABASE_URL"),
        ("NUMBASE_PHONE_REGION", "XX", "NUMBASE_PHONE_REGION"),
        ("NUMBASE_SFTP_PORT", "not-a-port", "NUMBASE_SFTP_PORT"),
        ("NUMBASE_SFTP_PORT", "70000", "NUMBASE_SFTP_PORT"),
        ("NUMBASE_JWT_SECRET", "short", "NUMBASE_JWT_SECRET"),
        ("NUMBASE_SFTP_KEY_FILE", "/nonexistent/key", "NUMBASE_SFTP_KEY_FILE"),
        ("NUMBASE_JWT_ACCESS_TTL_SECONDS", "0", "NUMBASE_JWT_ACCESS_TTL_SECONDS"),
    ],
)
def test_malformed_setting_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, named: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError, match=named):
        load_settings()


def test_region_is_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUMBASE_PHONE_REGION", "gb")
    assert load_settings().phone_region == "GB"


def test_generated_jwt_secret_is_stable_and_private(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("NUMBASE_DATA_DIR", str(tmp_path))
    first = load_settings().resolved_jwt_secret()
    assert len(first) >= 32 and first == load_settings().resolved_jwt_secret()
    assert (tmp_path / "jwt_secret").stat().st_mode & 0o077 == 0


def test_cli_reports_bad_setting_and_exits_2() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBASE_")}
    env["NUMBASE_PHONE_REGION"] = "nowhere"
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "db", "current"], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "NUMBASE_PHONE_REGION" in proc.stderr


def test_db_timeouts_become_connection_options(monkeypatch: pytest.MonkeyPatch) -> None:
    from models.db import db_timeouts

    monkeypatch.setenv("NUMBASE_DB_LOCK_TIMEOUT_SECONDS", "2.5")
    monkeypatch.setenv("NUMBASE_DB_STATEMENT_TIMEOUT_SECONDS", "0")  # no limit
    settings = load_settings()
    assert db_timeouts(settings).options() == "-c lock_timeout=2500 -c statement_timeout=0"
    bulk = db_timeouts(settings, bulk=True)
    assert bulk.options() == "-c lock_timeout=2500 -c statement_timeout=3600000"
    # Kept: options the caller passes itself.
    assert bulk.connect_args({"options": "-c work_mem=64MB"})["options"].startswith(
        "-c work_mem=64MB -c lock_timeout=2500"
    )
    monkeypatch.setenv("NUMBASE_DB_LOCK_TIMEOUT_SECONDS", "-1")
    with pytest.raises(SettingsError, match="NUMBASE_DB_LOCK_TIMEOUT_SECONDS"):
        load_settings()
