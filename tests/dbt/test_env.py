"""The profile's connection variables come from the database URL; bad input is a clear error."""

from __future__ import annotations

import pytest

from models.settings import SettingsError, load_settings
from orchestration.dbt_env import dbt_env


def test_url_to_profile_variables() -> None:
    env = dbt_env("postgresql://app:p%40ss@db.internal:6543/numbase?sslmode=require")
    assert env == {
        "NUMBASE_DB_HOST": "db.internal",
        "NUMBASE_DB_PORT": "6543",
        "NUMBASE_DB_USER": "app",
        "DBT_ENV_SECRET_NUMBASE_DB_PASSWORD": "p@ss",  # scrubbed from dbt's logs
        "NUMBASE_DB_NAME": "numbase",
        "NUMBASE_DB_SSLMODE": "require",
    }
    # The embedded server's URL: no password, port only known at run time.
    env = dbt_env("postgresql://postgres@127.0.0.1:40123/numbase")
    assert env["NUMBASE_DB_PORT"] == "40123" and env["DBT_ENV_SECRET_NUMBASE_DB_PASSWORD"] == ""


@pytest.mark.parametrize(
    ("url", "message"),
    [("mysql://u@h/db", "not a PostgreSQL URL"), ("postgresql:///numbase", "lacks host")],
)
def test_bad_urls(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dbt_env(url)


def test_conversion_cron_setting() -> None:
    assert load_settings().conversion_cron == "*/15 * * * *"
    assert load_settings(conversion_cron="0 * * * *").conversion_cron == "0 * * * *"
    with pytest.raises(SettingsError, match="NUMBASE_CONVERSION_CRON"):
        load_settings(conversion_cron="every 15 minutes")
