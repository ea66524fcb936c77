"""ORM tables: the plan's eleven plus what it implies (members, call events, revoked tokens,
login failures, conversion requests). Index choices are explained in docs/architecture.md."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    Time,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, INET, JSONB, TIMESTAMP
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

USER_ROLES = ("admin", "manager")
PROJECT_STATUSES = ("active", "paused", "deleted")
PROVIDER_STATUSES = ("active", "inactive")
NUMBER_STATUSES = ("new", "in_progress", "success", "failed", "no_answer")
JOB_TYPES = ("import", "export")
JOB_STATUSES = ("pending", "running", "completed", "failed")
CALL_EVENT_TYPES = ("call_started", "call_ended", "call_result")
# "family": a whole login session (every token rotated from one login), revoked by family id.
TOKEN_TYPES = ("access", "refresh", "family")
# How a number's time zone was found (models/dialing/resolve.py), most certain first.
TIMEZONE_SOURCES = ("geo", "registry", "libphonenumber", "ambiguous", "unknown")
LOAD_KINDS = ("sftp", "api")
# Which numbers a load skips besides the project's own (docs/lead-quality.md).
DEDUPE_SCOPES = ("project", "all_projects")
# How the dial queue hands out eligible numbers (models/dialing/queue.py).
HAND_OUT_ORDERS = ("priority_then_oldest", "fresh_first", "retries_first")

TZ = TIMESTAMP(timezone=True)
NOW = text("now()")
# The moment the row is written, not its transaction's start (now()): for "when it happened"
# columns written inside long transactions (migration 0005_clock; the updated_at trigger too).
CLOCK = text("clock_timestamp()")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _id() -> Mapped[int]:
    return mapped_column(BigInteger, Identity(), primary_key=True)


def _created() -> Mapped[dt.datetime]:
    return mapped_column(TZ, nullable=False, server_default=NOW)


def _updated() -> Mapped[dt.datetime]:
    # Kept current by the numbase_set_updated_at() trigger (clock_timestamp(), migration
    # 0005_clock), so set-based SQL updates it too.
    return mapped_column(TZ, nullable=False, server_default=NOW)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint(_in("role", USER_ROLES), name="role"),)

    id: Mapped[int] = _id()
    username: Mapped[str] = mapped_column(String(150), nullable=False, unique=True)
    email: Mapped[str] = mapped_column(String(255), nullable=False, unique=True)
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    role: Mapped[str] = mapped_column(String(50), nullable=False, server_default="manager")
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("true"))
    last_login_at: Mapped[dt.datetime | None] = mapped_column(TZ)
    # Every token carries the epoch it was issued in and is valid only while it is current.
    # The numbase_bump_token_epoch() trigger increments it whenever the password hash or the
    # active flag changes, by any writer (API, CLI, SQL): that ends every earlier session, and
    # re-activation revives none (docs/security.md).
    token_epoch: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    # Addresses of the latest successful logins (newest first, a few): a login from one of them
    # is a "known-good pair" that the per-username back-off never delays (api/login_throttle.py).
    known_addresses: Mapped[list[str]] = mapped_column(
        ARRAY(INET), nullable=False, server_default=text("'{}'")
    )
    created_at: Mapped[dt.datetime] = _created()
    updated_at: Mapped[dt.datetime] = _updated()


class Project(Base):
    __tablename__ = "projects"
    __table_args__ = (
        CheckConstraint(_in("status", PROJECT_STATUSES), name="status"),
        CheckConstraint("code ~ '^[a-z0-9][a-z0-9_-]{0,62}$'", name="code_slug"),
        # Soft delete is one consistent state, never half-applied.
        CheckConstraint(
            "(is_deleted AND deleted_at IS NOT NULL AND status = 'deleted') OR "
            "(NOT is_deleted AND deleted_at IS NULL AND status <> 'deleted')",
            name="soft_delete",
        ),
        Index("ix_projects_live_created_at", "created_at", postgresql_where=text("NOT is_deleted")),
        Index("ix_projects_status", "status"),
        CheckConstraint(_in("dedupe_scope", DEDUPE_SCOPES), name="dedupe_scope"),
        CheckConstraint("dedupe_window_days BETWEEN 1 AND 3650", name="dedupe_window_days"),
    )

    id: Mapped[int] = _id()
    code: Mapped[str] = mapped_column(String(63), nullable=False, unique=True)
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(50), nullable=False, server_default="active")
    is_deleted: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    deleted_at: Mapped[dt.datetime | None] = mapped_column(TZ)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = _created()
    updated_at: Mapped[dt.datetime] = _updated()
    dedupe_scope: Mapped[str] = mapped_column(String(20), nullable=False, server_default="project")
    # Also skip a number called in any project within this many days (None: no window).
    dedupe_window_days: Mapped[int | None] = mapped_column(Integer)


class Provider(Base):
    __tablename__ = "providers"
    __table_args__ = (
        CheckConstraint(_in("status", PROVIDER_STATUSES), name="status"),
        CheckConstraint("code ~ '^[a-z0-9][a-z0-9_-]{0,62}$'", name="code_slug"),
        Index("ix_providers_status", "status"),
    )

    id: Mapped[int] = _id()
    code: Mapped[str] = mapped_column(String(63), nullable=False, unique=True)
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    type: Mapped[str | None] = mapped_column(String(100))
    contact_info: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(String(50), nullable=False, server_default="active")
    created_at: Mapped[dt.datetime] = _created()
    updated_at: Mapped[dt.datetime] = _updated()


class Geo(Base):
    __tablename__ = "geo"
    __table_args__ = (Index("ix_geo_country_code", "country_code"),)

    id: Mapped[int] = _id()
    country_code: Mapped[str | None] = mapped_column(String(10))
    region: Mapped[str | None] = mapped_column(String(255))
    city: Mapped[str | None] = mapped_column(String(255))
    timezone: Mapped[str | None] = mapped_column(String(50))
    created_at: Mapped[dt.datetime] = _created()
    updated_at: Mapped[dt.datetime] = _updated()


class PhoneNumber(Base):
    """Tens of millions of rows: every index here is paid on every load (docs/architecture.md)."""

    __tablename__ = "phone_numbers"
    __table_args__ = (
        # Phone first: the SoftPhone pop-up looks a number up across all projects, and with
        # COLLATE "C" the same btree serves prefix search (LIKE '+7916%').
        UniqueConstraint("phone_number", "project_id", name="uq_phone_numbers_phone_project"),
        CheckConstraint(_in("status", NUMBER_STATUSES), name="status"),
        CheckConstraint("call_attempts >= 0", name="call_attempts"),
        CheckConstraint("phone_number ~ '^\\+[1-9][0-9]{6,14}$'", name="e164"),
        # Project lists, project+status filters, keyset pages and counts, all in one index.
        Index("ix_phone_numbers_project_status_id", "project_id", "status", "id"),
        # Keyset pages over one project without a status filter.
        Index("ix_phone_numbers_project_id_id", "project_id", "id"),
        Index("ix_phone_numbers_status_id", "status", "id"),
        Index(
            "ix_phone_numbers_provider_id",
            "provider_id",
            postgresql_where=text("provider_id IS NOT NULL"),
        ),
        Index("ix_phone_numbers_geo_id", "geo_id", postgresql_where=text("geo_id IS NOT NULL")),
        # created_at follows insertion order: a BRIN index is tiny and nearly free to maintain.
        Index("ix_phone_numbers_created_at_brin", "created_at", postgresql_using="brin"),
        CheckConstraint(
            "timezone_source IS NULL OR " + _in("timezone_source", TIMEZONE_SOURCES),
            name="timezone_source",
        ),
        Index(
            "ix_phone_numbers_source_load_id",
            "source_load_id",
            postgresql_where=text("source_load_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = _id()
    phone_number: Mapped[str] = mapped_column(String(20, collation="C"), nullable=False)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), nullable=False
    )
    provider_id: Mapped[int | None] = mapped_column(ForeignKey("providers.id", ondelete="SET NULL"))
    geo_id: Mapped[int | None] = mapped_column(ForeignKey("geo.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(50), nullable=False, server_default="new")
    call_attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    last_call_at: Mapped[dt.datetime | None] = mapped_column(TZ)
    result_data: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    attributes: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[dt.datetime] = _created()
    updated_at: Mapped[dt.datetime] = _updated()
    # Dialing (models/dialing/): nullable, no default, so adding them never rewrites the table.
    timezone: Mapped[str | None] = mapped_column(String(64))
    timezone_source: Mapped[str | None] = mapped_column(String(16))
    # Ambiguous numbers: their candidate zones, as a timezone_sets id (8 bytes, not ~250).
    timezone_set_id: Mapped[int | None] = mapped_column(BigInteger)
    region: Mapped[str | None] = mapped_column(String(255))
    operator: Mapped[str | None] = mapped_column(String(255))
    # The load that inserted the number (set once by the bulk loader; NULL = before loads
    # were recorded, or a single create).
    source_load_id: Mapped[int | None] = mapped_column(
        ForeignKey("number_loads.id", ondelete="SET NULL")
    )
    # Dial queue (models/dialing/queue.py): nullable, no default, no table rewrite.
    # Higher goes first. NOT NULL DEFAULT 0 is catalog-only in PostgreSQL 11+ (no rewrite).
    priority: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(TZ)  # set when an outcome arrives
    leased_until: Mapped[dt.datetime | None] = mapped_column(TZ)
    leased_by: Mapped[str | None] = mapped_column(String(150))


# The dial queue's "next eligible in order" walk (models/dialing/queue.py): a partial index, so
# numbers whose status is final (success) are not in it at all; the two trailing keys (the later
# of next attempt and lease expiry, and the attempts) let the walk pass over leased, waiting and
# exhausted numbers on the index entry (migration 0009_lease_index). Defined after the class: a
# DESC key needs the column object.
DIAL_QUEUE_DUE = (
    "COALESCE(GREATEST(next_attempt_at, leased_until), '-infinity'::timestamp with time zone)"
)
Index(
    "ix_phone_numbers_dial_queue",
    PhoneNumber.project_id,
    PhoneNumber.priority.desc(),
    PhoneNumber.id,
    text(f"({DIAL_QUEUE_DUE})"),
    PhoneNumber.call_attempts,
    postgresql_where=text("status <> 'success'"),
)


class ProjectProvider(Base):
    __tablename__ = "project_providers"
    __table_args__ = (
        UniqueConstraint("project_id", "provider_id"),
        Index("ix_project_providers_provider_id", "provider_id"),
    )

    id: Mapped[int] = _id()
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), nullable=False
    )
    provider_id: Mapped[int] = mapped_column(
        ForeignKey("providers.id", ondelete="CASCADE"), nullable=False
    )
    created_at: Mapped[dt.datetime] = _created()


class ProjectGeo(Base):
    __tablename__ = "project_geo"
    __table_args__ = (
        UniqueConstraint("project_id", "geo_id"),
        Index("ix_project_geo_geo_id", "geo_id"),
    )

    id: Mapped[int] = _id()
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), nullable=False
    )
    geo_id: Mapped[int] = mapped_column(ForeignKey("geo.id", ondelete="CASCADE"), nullable=False)
    created_at: Mapped[dt.datetime] = _created()


class ProjectMember(Base):
    """Which managers may see which project."""

    __tablename__ = "project_members"
    __table_args__ = (Index("ix_project_members_user_id", "user_id"),)

    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    created_at: Mapped[dt.datetime] = _created()


class ProjectSchedule(Base):
    __tablename__ = "project_schedules"
    __table_args__ = (
        CheckConstraint("weekday BETWEEN 0 AND 6", name="weekday"),
        CheckConstraint("start_time < end_time", name="time_window"),
        Index("ix_project_schedules_project_weekday", "project_id", "weekday"),
    )

    id: Mapped[int] = _id()
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), nullable=False
    )
    weekday: Mapped[int] = mapped_column(Integer, nullable=False)
    start_time: Mapped[dt.time] = mapped_column(Time, nullable=False)
    end_time: Mapped[dt.time] = mapped_column(Time, nullable=False)
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("true"))
    created_at: Mapped[dt.datetime] = _created()
    updated_at: Mapped[dt.datetime] = _updated()


class ProjectConversion(Base):
    """Snapshots written by the dbt conversion mart; the API reads the latest per project."""

    __tablename__ = "project_conversions"
    __table_args__ = (
        UniqueConstraint("project_id", "calculated_at"),
        CheckConstraint("conversion_rate BETWEEN 0 AND 100", name="conversion_rate"),
        Index("ix_project_conversions_calculated_at", "calculated_at"),
    )

    id: Mapped[int] = _id()
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), nullable=False
    )
    total_numbers: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    processed_numbers: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    in_progress_numbers: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    success_numbers: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    failed_numbers: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    no_answer_numbers: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    conversion_rate: Mapped[float] = mapped_column(
        Numeric(5, 2), nullable=False, server_default="0"
    )
    call_attempts: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    last_call_at: Mapped[dt.datetime | None] = mapped_column(TZ)
    calculated_at: Mapped[dt.datetime] = mapped_column(TZ, nullable=False, server_default=NOW)


class SftpJob(Base):
    """Durable SFTP job requests and their lifecycle; a Dagster sensor turns them into runs."""

    __tablename__ = "sftp_jobs"
    __table_args__ = (
        CheckConstraint(_in("job_type", JOB_TYPES), name="job_type"),
        CheckConstraint(_in("status", JOB_STATUSES), name="status"),
        Index("ix_sftp_jobs_pending", "id", postgresql_where=text("status = 'pending'")),
        Index("ix_sftp_jobs_status", "status"),
        Index("ix_sftp_jobs_project_created", "project_id", "created_at"),
        Index("ix_sftp_jobs_created_at", "created_at"),
        Index(
            "ix_sftp_jobs_project_content",
            "project_id",
            "content_sha256",
            postgresql_where=text("content_sha256 IS NOT NULL"),
        ),
        Index(
            "ix_sftp_jobs_retry_due",
            "next_retry_at",
            postgresql_where=text("status = 'pending' AND next_retry_at IS NOT NULL"),
        ),
    )

    id: Mapped[int] = _id()
    job_type: Mapped[str] = mapped_column(String(50), nullable=False)
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id", ondelete="SET NULL"))
    provider_id: Mapped[int | None] = mapped_column(ForeignKey("providers.id", ondelete="SET NULL"))
    file_name: Mapped[str | None] = mapped_column(String(255))
    file_path: Mapped[str | None] = mapped_column(Text)
    params: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    stats: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(String(50), nullable=False, server_default="pending")
    error_log: Mapped[str | None] = mapped_column(Text)
    records_count: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    dagster_run_id: Mapped[str | None] = mapped_column(String(64))
    # sha256 of the bytes an import read: a delivery's identity (not name + size + mtime).
    content_sha256: Mapped[str | None] = mapped_column(String(64))
    # Automatic retries (models/job_recovery.py): the attempt now pending or running, and when
    # a pending retry may start (NULL: at once).
    attempt: Mapped[int] = mapped_column(Integer, nullable=False, server_default="1")
    next_retry_at: Mapped[dt.datetime | None] = mapped_column(TZ)
    requested_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    started_at: Mapped[dt.datetime | None] = mapped_column(TZ)
    completed_at: Mapped[dt.datetime | None] = mapped_column(TZ)
    created_at: Mapped[dt.datetime] = _created()
    updated_at: Mapped[dt.datetime] = _updated()


class NumberLoad(Base):
    """One load (an SFTP file's job or an API bulk request) and its counts, written by the bulk
    loader in the load's transaction (models/number_loads.py)."""

    __tablename__ = "number_loads"
    __table_args__ = (
        CheckConstraint(_in("kind", LOAD_KINDS), name="kind"),
        CheckConstraint(_in("dedupe_scope", DEDUPE_SCOPES), name="dedupe_scope"),
        CheckConstraint("lead_cost >= 0", name="lead_cost"),
        UniqueConstraint("sftp_job_id"),
        Index("ix_number_loads_project_created", "project_id", "created_at"),
        Index(
            "ix_number_loads_provider_created",
            "provider_id",
            "created_at",
            postgresql_where=text("provider_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = _id()
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), nullable=False
    )
    provider_id: Mapped[int | None] = mapped_column(ForeignKey("providers.id", ondelete="SET NULL"))
    sftp_job_id: Mapped[int | None] = mapped_column(ForeignKey("sftp_jobs.id", ondelete="SET NULL"))
    source: Mapped[str | None] = mapped_column(Text)  # the file path, or "json" / "csv:<name>"
    dedupe_scope: Mapped[str] = mapped_column(String(20), nullable=False)
    dedupe_window_days: Mapped[int | None] = mapped_column(Integer)
    rows_read: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    inserted: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    duplicate_in_input: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    already_present: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    duplicate_elsewhere: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    invalid: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    lead_cost: Mapped[float | None] = mapped_column(Numeric(14, 2))  # what the load cost in total
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = _created()
    updated_at: Mapped[dt.datetime] = _updated()


class ConversionRequest(Base):
    """Durable 'recalculate conversion' requests, picked up by a Dagster sensor."""

    __tablename__ = "conversion_requests"
    __table_args__ = (
        CheckConstraint(_in("status", JOB_STATUSES), name="status"),
        Index("ix_conversion_requests_pending", "id", postgresql_where=text("status = 'pending'")),
        Index("ix_conversion_requests_project_id", "project_id"),
    )

    id: Mapped[int] = _id()
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(50), nullable=False, server_default="pending")
    error_log: Mapped[str | None] = mapped_column(Text)
    dagster_run_id: Mapped[str | None] = mapped_column(String(64))
    requested_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    started_at: Mapped[dt.datetime | None] = mapped_column(TZ)
    completed_at: Mapped[dt.datetime | None] = mapped_column(TZ)
    created_at: Mapped[dt.datetime] = _created()
    updated_at: Mapped[dt.datetime] = _updated()


class CallEvent(Base):
    """Every SoftPhone event, matched or not, stored before its effect is applied."""

    __tablename__ = "call_events"
    __table_args__ = (
        CheckConstraint(_in("event_type", CALL_EVENT_TYPES), name="event_type"),
        Index("ix_call_events_number_occurred", "phone_number_id", "occurred_at"),
        Index("ix_call_events_project_occurred", "project_id", "occurred_at"),
        Index("ix_call_events_unmatched", "id", postgresql_where=text("NOT matched")),
    )

    id: Mapped[int] = _id()
    event_id: Mapped[str] = mapped_column(String(128), nullable=False, unique=True)
    event_type: Mapped[str] = mapped_column(String(32), nullable=False)
    phone_number: Mapped[str] = mapped_column(String(32), nullable=False)
    phone_number_id: Mapped[int | None] = mapped_column(
        ForeignKey("phone_numbers.id", ondelete="SET NULL")
    )
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id", ondelete="SET NULL"))
    matched: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    occurred_at: Mapped[dt.datetime] = mapped_column(TZ, nullable=False)
    received_at: Mapped[dt.datetime] = mapped_column(TZ, nullable=False, server_default=CLOCK)


class RevokedToken(Base):
    """Logged-out and rotated JWTs by jti, and ended sessions by family id (token_type
    "family"), each until every token it covers would have expired anyway."""

    __tablename__ = "revoked_tokens"
    __table_args__ = (
        CheckConstraint(_in("token_type", TOKEN_TYPES), name="token_type"),
        Index("ix_revoked_tokens_expires_at", "expires_at"),
    )

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    token_type: Mapped[str] = mapped_column(String(16), nullable=False)
    expires_at: Mapped[dt.datetime] = mapped_column(TZ, nullable=False)
    revoked_at: Mapped[dt.datetime] = mapped_column(TZ, nullable=False, server_default=CLOCK)


class LoginFailure(Base):
    """Login attempts being verified or failed, counted per username+address pair, per address
    and per username to throttle guessing (api/login_throttle.py). A row is written before
    the password is checked, under a lock, and deleted again when the password was right."""

    __tablename__ = "login_failures"
    __table_args__ = (
        Index("ix_login_failures_username_at", "username", "attempted_at"),
        Index("ix_login_failures_ip_at", "ip_address", "attempted_at"),
    )

    id: Mapped[int] = _id()
    username: Mapped[str] = mapped_column(String(150), nullable=False)
    ip_address: Mapped[str | None] = mapped_column(INET)
    attempted_at: Mapped[dt.datetime] = mapped_column(TZ, nullable=False, server_default=CLOCK)


class AuditLog(Base):
    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_entity", "entity_type", "entity_id", "created_at"),
        Index("ix_audit_log_user_created", "user_id", "created_at"),
        Index("ix_audit_log_action_created", "action", "created_at"),
        Index("ix_audit_log_created_at_brin", "created_at", postgresql_using="brin"),
    )

    id: Mapped[int] = _id()
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # Non-user actors ("system:softphone", "system:dagster"); NULL for user actions.
    actor: Mapped[str | None] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(100), nullable=False)
    entity_type: Mapped[str | None] = mapped_column(String(50))
    entity_id: Mapped[int | None] = mapped_column(BigInteger)
    changes: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    ip_address: Mapped[str | None] = mapped_column(INET)
    user_agent: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(TZ, nullable=False, server_default=CLOCK)


class RegistryLoad(Base):
    """One load of the numbering-plan registry, with its counts per file."""

    __tablename__ = "registry_loads"

    id: Mapped[int] = _id()
    files: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, nullable=False)
    ranges: Mapped[int] = mapped_column(BigInteger, nullable=False)
    loaded_by: Mapped[str | None] = mapped_column(String(150))
    loaded_at: Mapped[dt.datetime] = mapped_column(TZ, nullable=False, server_default=NOW)


class TimezoneSet(Base):
    """A set of candidate zones, keyed by a hash of its sorted zones (models/dialing/zonesets.py),
    so every writer derives the same id without a lookup. Rows are never deleted."""

    __tablename__ = "timezone_sets"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    zones: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False)


class NumberingRange(Base):
    """The current registry: ranges of national numbers (models/dialing/registry.py)."""

    __tablename__ = "numbering_ranges"
    __table_args__ = (
        CheckConstraint("range_from <= range_to", name="bounds"),
        UniqueConstraint("country", "range_from"),
    )

    id: Mapped[int] = _id()
    load_id: Mapped[int] = mapped_column(
        ForeignKey("registry_loads.id", ondelete="CASCADE"), nullable=False
    )
    country: Mapped[str] = mapped_column(String(4), nullable=False)
    prefix: Mapped[int] = mapped_column(Integer, nullable=False)
    range_from: Mapped[int] = mapped_column(BigInteger, nullable=False)
    range_to: Mapped[int] = mapped_column(BigInteger, nullable=False)
    operator: Mapped[str] = mapped_column(Text, nullable=False)
    region: Mapped[str] = mapped_column(Text, nullable=False)
    region_raw: Mapped[str] = mapped_column(Text, nullable=False)
    # NULL: the region is not in the curated table; several: the region spans several zones.
    zones: Mapped[list[str] | None] = mapped_column(ARRAY(Text))


class TimezoneBackfill(Base):
    """Progress of one back-fill of phone_numbers' time zones, so a stopped run resumes."""

    __tablename__ = "timezone_backfills"

    id: Mapped[int] = _id()
    registry_load_id: Mapped[int | None] = mapped_column(
        ForeignKey("registry_loads.id", ondelete="SET NULL")
    )
    last_id: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    rows_done: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    finished_at: Mapped[dt.datetime | None] = mapped_column(TZ)
    created_at: Mapped[dt.datetime] = _created()
    updated_at: Mapped[dt.datetime] = _updated()


class Holiday(Base):
    """The holiday calendar of the calling policy (admins manage it): a listed date is a
    holiday, or a working day when `is_working_day` (a weekend moved to a working day)."""

    __tablename__ = "holidays"

    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    is_working_day: Mapped[bool] = mapped_column(
        Boolean, nullable=False, server_default=text("false")
    )
    created_at: Mapped[dt.datetime] = _created()


class DncEntry(Base):
    """Do-not-call entries: global (project_id NULL) or for one project."""

    __tablename__ = "dnc_entries"
    __table_args__ = (
        # Phone first: "is this number listed" is the question every rule asks.
        UniqueConstraint(
            "phone_number", "project_id", name="uq_dnc_entries_phone_project",
            postgresql_nulls_not_distinct=True,
        ),
        CheckConstraint("phone_number ~ '^\\+[1-9][0-9]{6,14}$'", name="e164"),
        Index("ix_dnc_entries_project_id", "project_id"),
    )  # fmt: skip

    id: Mapped[int] = _id()
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    phone_number: Mapped[str] = mapped_column(String(20, collation="C"), nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    source: Mapped[str] = mapped_column(String(50), nullable=False, server_default="manual")
    expires_at: Mapped[dt.datetime | None] = mapped_column(TZ)
    added_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = _created()
    updated_at: Mapped[dt.datetime] = _updated()


class ProjectDialingRules(Base):
    """A project's dial-queue rules; a project without a row uses the defaults
    (models/dialing/queue_rules.py)."""

    __tablename__ = "project_dialing_rules"
    __table_args__ = (
        CheckConstraint("max_attempts BETWEEN 1 AND 1000", name="max_attempts"),
        CheckConstraint("min_gap_seconds BETWEEN 0 AND 31536000", name="min_gap_seconds"),
        CheckConstraint(_in("hand_out_order", HAND_OUT_ORDERS), name="hand_out_order"),
    )

    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    max_attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="5")
    min_gap_seconds: Mapped[int] = mapped_column(Integer, nullable=False, server_default="600")
    hand_out_order: Mapped[str] = mapped_column(
        String(32), nullable=False, server_default="priority_then_oldest"
    )
    # {outcome: {"final": bool, "retry_seconds": int}}
    outcomes: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    updated_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = _created()
    updated_at: Mapped[dt.datetime] = _updated()


class CallableCount(Base):
    """How many numbers a project has per (timezone, candidate set, DNC state): the callable
    summary's input, kept exact by statement-level triggers on phone_numbers and dnc_entries
    (migration 0009_callable_counts, models/dialing/counts.py). Append-only deltas, summed on
    read and compacted now and then; no foreign key (a deleted project's rows net to zero)."""

    __tablename__ = "callable_counts"
    __table_args__ = (Index("ix_callable_counts_project_id", "project_id"),)

    id: Mapped[int] = _id()
    project_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    timezone: Mapped[str | None] = mapped_column(String(64))
    timezone_set_id: Mapped[int | None] = mapped_column(BigInteger)
    # NULL: no do-not-call entry covers these numbers; else the latest expiry of the entries
    # that do ('infinity': one never expires; Python's datetime cannot load it, so read these
    # rows in SQL, as models/dialing/counts.py does). Listed at `now` iff listed_until > now.
    listed_until: Mapped[dt.datetime | None] = mapped_column(TZ)
    numbers: Mapped[int] = mapped_column(BigInteger, nullable=False)


TABLES_WITH_UPDATED_AT = tuple(
    table.name for table in Base.metadata.sorted_tables if "updated_at" in table.c
)
