"""Configuration shared by the API, Dagster and the CLI: every knob is a `NUMBASE_` variable."""

from __future__ import annotations

import ipaddress
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

import phonenumbers
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "NUMBASE_"


class SettingsError(RuntimeError):
    """A setting is missing or malformed; the message names the environment variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    # Data layer. Unset database URL means: run the embedded PostgreSQL in data_dir/pgdata.
    database_url: str | None = None
    data_dir: Path = Path(".numbase")
    db_pool_size: int = Field(10, ge=1, le=200)
    # How long any statement may wait for a lock (0 = forever) or run at all (0 = no limit):
    # a held lock fails the waiter with a message naming the wait instead of stalling it.
    # Bulk loads (SFTP imports, Dagster assets) get their own, longer statement limit.
    db_lock_timeout_seconds: float = Field(10.0, ge=0, le=86400)
    db_statement_timeout_seconds: float = Field(300.0, ge=0, le=86400)
    db_bulk_statement_timeout_seconds: float = Field(3600.0, ge=0, le=7 * 86400)
    # The SoftPhone webhook's shared (group-commit) transaction waits at most this long for a
    # lock before its requests are split (api/event_batcher.py): one busy number never holds up
    # the other requests of its group.
    db_webhook_lock_timeout_seconds: float = Field(0.2, gt=0, le=60)
    # Behind a transaction pooler (pgbouncer): send no per-connection `options` (the pooler
    # refuses them); the session defaults above then come from the pooler's own config.
    db_pooled: bool = False
    # Where a connection that holds session state goes (an import run's liveness lock, which
    # must end with its process): behind a transaction pooler, a session-pooled alias or
    # PostgreSQL itself. Unset: NUMBASE_DATABASE_URL.
    db_session_url: str | None = None
    phone_region: str = "RU"

    # Auth. Unset JWT secret: a random one is generated once and kept in data_dir (0600).
    jwt_secret: str | None = Field(None, min_length=32)
    jwt_access_ttl_seconds: int = Field(900, ge=30)
    jwt_refresh_ttl_seconds: int = Field(7 * 24 * 3600, ge=60)
    # Login throttle (docs/security.md): failures per username+address pair, per address, and
    # the cap of the per-username back-off.
    login_max_failures: int = Field(5, ge=1)
    login_window_seconds: int = Field(900, ge=1)
    login_max_failures_per_address: int = Field(100, ge=1)
    login_backoff_max_seconds: int = Field(300, ge=1)
    cors_origins: list[str] = Field(default_factory=list)

    # SoftPhone integration: webhook HMAC secret and a read-only service key for the pop-up.
    softphone_webhook_secret: str | None = Field(None, min_length=16)
    softphone_api_key: str | None = Field(None, min_length=16)
    softphone_max_skew_seconds: int = Field(300, ge=1)

    # SFTP. Unset host means: run the local SFTP server rooted at data_dir/sftp.
    sftp_host: str | None = None
    sftp_port: int = Field(2222, ge=1, le=65535)
    sftp_user: str = "numbase"
    sftp_password: str | None = None
    sftp_key_file: Path | None = None
    sftp_known_hosts: Path | None = None
    sftp_host_key_policy: Literal["known_hosts", "accept_new"] = "accept_new"
    # Inbox: a file must hold still this long before it is imported (done-markers skip it), and
    # an incomplete one (no final line break, no zip directory) is rejected as truncated after
    # holding still this long.
    sftp_settle_seconds: int = Field(30, ge=0)
    sftp_incomplete_timeout_seconds: int = Field(1800, ge=1)

    # Processes started by `numbase up`.
    api_host: str = "127.0.0.1"
    # Peers whose X-Forwarded-For uvicorn believes (comma-separated IPs/CIDRs, or *).
    trusted_proxies: str = "127.0.0.1"
    api_port: int = Field(8000, ge=1, le=65535)
    dagster_port: int = Field(3000, ge=1, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # Automatic retries of an SFTP import that failed for a transient reason (database restart,
    # SFTP drop, a run worker or code server that died): attempts in all, and the first wait
    # (doubling for each further retry, at most 15 minutes). 1 attempt = no automatic retry.
    import_retry_attempts: int = Field(3, ge=1, le=20)
    import_retry_delay_seconds: float = Field(60.0, ge=0, le=3600)
    # Dialing policy (models/dialing/policy.py): legal hours in the number's local time on
    # working days and on weekends/holidays; the zone assumed for numbers of unknown zone
    # (empty: such numbers are never callable).
    dialing_workday_hours: str = "08:00-22:00"
    dialing_dayoff_hours: str = "09:00-20:00"
    dialing_unknown_zone: str = ""
    # Dial-queue state (GET /api/projects/{id}/dial-queue/) counts a whole project; each API
    # worker reuses its counts for this many seconds (0: count on every call).
    dial_queue_state_cache_seconds: float = Field(5.0, ge=0, le=3600)
    # A lease reads the project's rules, schedule and the holidays at most this often per
    # worker (models/dialing/queue_plan.py: the staleness bound for other workers; 0: per lease).
    dial_queue_plan_cache_seconds: float = Field(5.0, ge=0, le=300)

    # Conversion (dbt) refresh schedule, a five-field cron expression (UTC).
    conversion_cron: str = Field("*/15 * * * *", pattern=r"^\S+( \S+){4}$")

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("postgresql://", "postgresql+psycopg://", "postgres://")):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("phone_region")
    @classmethod
    def _check_region(cls, value: str) -> str:
        region = value.upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{value!r} is not an ISO 3166 region phonenumbers knows")
        return region

    @field_validator("trusted_proxies")
    @classmethod
    def _check_trusted_proxies(cls, value: str) -> str:
        # uvicorn silently treats a malformed entry as a literal that never matches.
        items = [item.strip() for item in value.split(",") if item.strip()]
        if items != ["*"]:
            for item in items:
                try:
                    ipaddress.ip_network(item, strict=False)
                except ValueError:
                    raise ValueError(f"{item!r} is not an IP address or network") from None
        return ",".join(items)

    @field_validator("dialing_workday_hours", "dialing_dayoff_hours")
    @classmethod
    def _check_hours(cls, value: str) -> str:
        from models.dialing.policy import parse_hours

        parse_hours(value)
        return value

    @field_validator("dialing_unknown_zone")
    @classmethod
    def _check_unknown_zone(cls, value: str) -> str:
        from models.dialing.resolve import is_zone

        if value and not is_zone(value):
            raise ValueError(f"{value!r} is not an IANA time zone (or leave it empty: never)")
        return value

    @field_validator("sftp_key_file")
    @classmethod
    def _check_key_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @property
    def embedded_database(self) -> bool:
        return self.database_url is None

    @property
    def local_sftp(self) -> bool:
        return self.sftp_host is None

    @property
    def pgdata_dir(self) -> Path:
        return self.data_dir.resolve() / "pgdata"

    @property
    def sftp_root(self) -> Path:
        return self.data_dir.resolve() / "sftp"

    @property
    def dagster_home(self) -> Path:
        return self.data_dir.resolve() / "dagster"

    def resolved_jwt_secret(self) -> str:
        """The configured secret, else one generated once per data folder."""
        if self.jwt_secret:
            return self.jwt_secret
        path = self.data_dir.resolve() / "jwt_secret"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(48))
        return path.read_text().strip()


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment, turning pydantic errors into one clear message."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            problems.append(f"{ENV_PREFIX}{field.upper()}: {err['msg']}")
        raise SettingsError("invalid configuration: " + "; ".join(problems)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
