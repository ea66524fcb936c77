"""dialing: numbering-plan registry, time zones on numbers, holidays, do-not-call lists

Revision ID: 0006_dialing
Revises: 0004_recovery
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006_dialing"
down_revision: str | None = "0004_recovery"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = postgresql.TIMESTAMP(timezone=True)
NOW = sa.text("now()")
TIMEZONE_SOURCES = ("geo", "registry", "libphonenumber", "ambiguous", "unknown")


def _created() -> sa.Column:
    return sa.Column("created_at", TZ, server_default=NOW, nullable=False)


def _updated() -> sa.Column:
    return sa.Column("updated_at", TZ, server_default=NOW, nullable=False)


def upgrade() -> None:
    # Nullable, no default: PostgreSQL adds these in the catalog only, without rewriting or
    # scanning the (10M-row) table; the back-fill asset fills them in batches.
    op.add_column("phone_numbers", sa.Column("timezone", sa.String(length=64), nullable=True))
    op.add_column(
        "phone_numbers", sa.Column("timezone_source", sa.String(length=16), nullable=True)
    )
    op.add_column("phone_numbers", sa.Column("timezone_set_id", sa.BigInteger(), nullable=True))
    op.add_column("phone_numbers", sa.Column("region", sa.String(length=255), nullable=True))
    op.add_column("phone_numbers", sa.Column("operator", sa.String(length=255), nullable=True))
    # NOT VALID: checked for new rows now, old rows are all NULL anyway; no full scan under lock.
    op.execute(
        "ALTER TABLE phone_numbers ADD CONSTRAINT ck_phone_numbers_timezone_source CHECK "
        "(timezone_source IS NULL OR timezone_source IN ("
        + ", ".join(f"'{s}'" for s in TIMEZONE_SOURCES)
        + ")) NOT VALID"
    )

    op.create_table(
        "registry_loads",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("files", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("ranges", sa.BigInteger(), nullable=False),
        sa.Column("loaded_by", sa.String(length=150), nullable=True),
        sa.Column("loaded_at", TZ, server_default=NOW, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registry_loads")),
    )
    op.create_table(
        "timezone_sets",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("zones", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_timezone_sets")),
    )
    op.create_table(
        "numbering_ranges",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("load_id", sa.BigInteger(), nullable=False),
        sa.Column("country", sa.String(length=4), nullable=False),
        sa.Column("prefix", sa.Integer(), nullable=False),
        sa.Column("range_from", sa.BigInteger(), nullable=False),
        sa.Column("range_to", sa.BigInteger(), nullable=False),
        sa.Column("operator", sa.Text(), nullable=False),
        sa.Column("region", sa.Text(), nullable=False),
        sa.Column("region_raw", sa.Text(), nullable=False),
        sa.Column("zones", postgresql.ARRAY(sa.Text()), nullable=True),
        sa.CheckConstraint("range_from <= range_to", name=op.f("ck_numbering_ranges_bounds")),
        sa.ForeignKeyConstraint(
            ["load_id"], ["registry_loads.id"],
            name=op.f("fk_numbering_ranges_load_id_registry_loads"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_numbering_ranges")),
        sa.UniqueConstraint(
            "country", "range_from", name=op.f("uq_numbering_ranges_country_range_from")
        ),
    )  # fmt: skip
    op.create_table(
        "timezone_backfills",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("registry_load_id", sa.BigInteger(), nullable=True),
        sa.Column("last_id", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("rows_done", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("finished_at", TZ, nullable=True),
        _created(),
        _updated(),
        sa.ForeignKeyConstraint(
            ["registry_load_id"], ["registry_loads.id"],
            name=op.f("fk_timezone_backfills_registry_load_id_registry_loads"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_timezone_backfills")),
    )  # fmt: skip
    op.create_table(
        "holidays",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("is_working_day", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        _created(),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_holidays")),
    )
    op.create_table(
        "dnc_entries",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("project_id", sa.BigInteger(), nullable=True),
        sa.Column("phone_number", sa.String(length=20, collation="C"), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=50), server_default="manual", nullable=False),
        sa.Column("expires_at", TZ, nullable=True),
        sa.Column("added_by", sa.BigInteger(), nullable=True),
        _created(),
        _updated(),
        sa.CheckConstraint(
            "phone_number ~ '^\\+[1-9][0-9]{6,14}$'", name=op.f("ck_dnc_entries_e164")
        ),
        sa.ForeignKeyConstraint(
            ["added_by"], ["users.id"], name=op.f("fk_dnc_entries_added_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_dnc_entries_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dnc_entries")),
        sa.UniqueConstraint(
            "phone_number", "project_id", name="uq_dnc_entries_phone_project",
            postgresql_nulls_not_distinct=True,
        ),
    )  # fmt: skip
    op.create_index("ix_dnc_entries_project_id", "dnc_entries", ["project_id"], unique=False)
    for table in ("timezone_backfills", "dnc_entries"):
        op.execute(
            f"CREATE TRIGGER trg_{table}_updated_at BEFORE UPDATE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION numbase_set_updated_at()"
        )


def downgrade() -> None:
    op.drop_index("ix_dnc_entries_project_id", table_name="dnc_entries")
    op.drop_table("dnc_entries")
    op.drop_table("holidays")
    op.drop_table("timezone_backfills")
    op.drop_table("numbering_ranges")
    op.drop_table("registry_loads")
    op.drop_table("timezone_sets")
    op.drop_constraint(op.f("ck_phone_numbers_timezone_source"), "phone_numbers", type_="check")
    for column in ("operator", "region", "timezone_set_id", "timezone_source", "timezone"):
        op.drop_column("phone_numbers", column)
