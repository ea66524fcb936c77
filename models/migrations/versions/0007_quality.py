"""lead quality: number_loads, phone_numbers.source_load_id, per-project dedupe scope

Revision ID: 0007_quality
Revises: 0006_dialing

- number_loads: one row per load (an SFTP file's job, an API bulk request) with its counts,
  written by the bulk loader in the load's own transaction;
- phone_numbers.source_load_id: the load that inserted the number. ADD COLUMN without a default
  is a catalog change only (no rewrite of a 10M-row table); existing rows stay NULL = unknown.
  Its index is partial (NOT NULL only), so building it writes no entry for the existing rows;
- projects.dedupe_scope / dedupe_window_days: which numbers a load skips (docs/lead-quality.md).
  A constant default is also catalog-only since PostgreSQL 11.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007_quality"
down_revision: str | None = "0006_dialing"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = postgresql.TIMESTAMP(timezone=True)


def _count(name: str) -> sa.Column:
    return sa.Column(name, sa.BigInteger(), server_default="0", nullable=False)


def upgrade() -> None:
    op.create_table(
        "number_loads",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.Column("provider_id", sa.BigInteger(), nullable=True),
        sa.Column("sftp_job_id", sa.BigInteger(), nullable=True),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("dedupe_scope", sa.String(length=20), nullable=False),
        sa.Column("dedupe_window_days", sa.Integer(), nullable=True),
        _count("rows_read"),
        _count("inserted"),
        _count("duplicate_in_input"),
        _count("already_present"),
        _count("duplicate_elsewhere"),
        _count("invalid"),
        sa.Column("lead_cost", sa.Numeric(precision=14, scale=2), nullable=True),
        sa.Column("created_by", sa.BigInteger(), nullable=True),
        sa.Column("created_at", TZ, server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", TZ, server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("kind IN ('sftp', 'api')", name=op.f("ck_number_loads_kind")),
        sa.CheckConstraint(
            "dedupe_scope IN ('project', 'all_projects')",
            name=op.f("ck_number_loads_dedupe_scope"),
        ),
        sa.CheckConstraint("lead_cost >= 0", name=op.f("ck_number_loads_lead_cost")),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"],
            name=op.f("fk_number_loads_project_id_projects"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["provider_id"], ["providers.id"],
            name=op.f("fk_number_loads_provider_id_providers"), ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["sftp_job_id"], ["sftp_jobs.id"],
            name=op.f("fk_number_loads_sftp_job_id_sftp_jobs"), ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"],
            name=op.f("fk_number_loads_created_by_users"), ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_number_loads")),
        sa.UniqueConstraint("sftp_job_id", name=op.f("uq_number_loads_sftp_job_id")),
    )  # fmt: skip
    op.create_index("ix_number_loads_project_created", "number_loads", ["project_id", "created_at"])
    op.create_index(
        "ix_number_loads_provider_created",
        "number_loads",
        ["provider_id", "created_at"],
        postgresql_where=sa.text("provider_id IS NOT NULL"),
    )
    op.execute(
        "CREATE TRIGGER trg_number_loads_updated_at BEFORE UPDATE ON number_loads "
        "FOR EACH ROW EXECUTE FUNCTION numbase_set_updated_at()"
    )

    op.add_column("phone_numbers", sa.Column("source_load_id", sa.BigInteger(), nullable=True))
    op.create_foreign_key(
        op.f("fk_phone_numbers_source_load_id_number_loads"),
        "phone_numbers",
        "number_loads",
        ["source_load_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.create_index(
        "ix_phone_numbers_source_load_id",
        "phone_numbers",
        ["source_load_id"],
        postgresql_where=sa.text("source_load_id IS NOT NULL"),
    )

    op.add_column(
        "projects",
        sa.Column("dedupe_scope", sa.String(length=20), server_default="project", nullable=False),
    )
    op.add_column("projects", sa.Column("dedupe_window_days", sa.Integer(), nullable=True))
    op.create_check_constraint(
        op.f("ck_projects_dedupe_scope"), "projects", "dedupe_scope IN ('project', 'all_projects')"
    )
    op.create_check_constraint(
        op.f("ck_projects_dedupe_window_days"),
        "projects",
        "dedupe_window_days BETWEEN 1 AND 3650",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_projects_dedupe_window_days"), "projects", type_="check")
    op.drop_constraint(op.f("ck_projects_dedupe_scope"), "projects", type_="check")
    op.drop_column("projects", "dedupe_window_days")
    op.drop_column("projects", "dedupe_scope")
    op.drop_index(
        "ix_phone_numbers_source_load_id",
        table_name="phone_numbers",
        postgresql_where=sa.text("source_load_id IS NOT NULL"),
    )
    op.drop_constraint(
        op.f("fk_phone_numbers_source_load_id_number_loads"), "phone_numbers", type_="foreignkey"
    )
    op.drop_column("phone_numbers", "source_load_id")
    op.drop_index("ix_number_loads_provider_created", table_name="number_loads")
    op.drop_index("ix_number_loads_project_created", table_name="number_loads")
    op.drop_table("number_loads")
