"""dial queue: per-project dialing rules; priority, next attempt and lease on the number

Revision ID: 0008_queue
Revises: 0007_quality
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008_queue"
down_revision: str | None = "0007_quality"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = postgresql.TIMESTAMP(timezone=True)
NOW = sa.text("now()")
HAND_OUT_ORDERS = ("priority_then_oldest", "fresh_first", "retries_first")


def upgrade() -> None:
    # Catalog-only additions, no rewrite or scan of the 10M-row table.
    # A constant default is stored in the catalog (PostgreSQL 11+): no rewrite either.
    op.add_column(
        "phone_numbers",
        sa.Column("priority", sa.Integer(), server_default="0", nullable=False),
    )
    op.add_column("phone_numbers", sa.Column("next_attempt_at", TZ, nullable=True))
    op.add_column("phone_numbers", sa.Column("leased_until", TZ, nullable=True))
    op.add_column("phone_numbers", sa.Column("leased_by", sa.String(length=150), nullable=True))
    # "Next eligible number of a project in priority order" is an index walk that stops after
    # `count` hits; numbers whose status is final (success) are not in it at all.
    op.create_index(
        "ix_phone_numbers_dial_queue",
        "phone_numbers",
        ["project_id", sa.text("priority DESC"), "id"],
        unique=False,
        postgresql_where=sa.text("status <> 'success'"),
    )
    op.create_table(
        "project_dialing_rules",
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), server_default="5", nullable=False),
        sa.Column("min_gap_seconds", sa.Integer(), server_default="600", nullable=False),
        sa.Column(
            "hand_out_order", sa.String(length=32),
            server_default="priority_then_oldest", nullable=False,
        ),
        sa.Column("outcomes", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("updated_by", sa.BigInteger(), nullable=True),
        sa.Column("created_at", TZ, server_default=NOW, nullable=False),
        sa.Column("updated_at", TZ, server_default=NOW, nullable=False),
        sa.CheckConstraint(
            "max_attempts BETWEEN 1 AND 1000", name=op.f("ck_project_dialing_rules_max_attempts")
        ),
        sa.CheckConstraint(
            "min_gap_seconds BETWEEN 0 AND 31536000",
            name=op.f("ck_project_dialing_rules_min_gap_seconds"),
        ),
        sa.CheckConstraint(
            "hand_out_order IN ("
            + ", ".join(f"'{o}'" for o in HAND_OUT_ORDERS)
            + ")",
            name=op.f("ck_project_dialing_rules_hand_out_order"),
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"],
            name=op.f("fk_project_dialing_rules_project_id_projects"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["updated_by"], ["users.id"],
            name=op.f("fk_project_dialing_rules_updated_by_users"), ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("project_id", name=op.f("pk_project_dialing_rules")),
    )  # fmt: skip
    op.execute(
        "CREATE TRIGGER trg_project_dialing_rules_updated_at BEFORE UPDATE ON "
        "project_dialing_rules FOR EACH ROW EXECUTE FUNCTION numbase_set_updated_at()"
    )


def downgrade() -> None:
    op.drop_table("project_dialing_rules")
    op.drop_index("ix_phone_numbers_dial_queue", table_name="phone_numbers")
    for column in ("leased_by", "leased_until", "next_attempt_at", "priority"):
        op.drop_column("phone_numbers", column)
