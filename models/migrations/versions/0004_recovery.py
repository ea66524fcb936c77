"""sftp_jobs: attempt number and the time of the next automatic retry

Revision ID: 0004_recovery
Revises: 0005_clock
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004_recovery"
down_revision: str | None = "0005_clock"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "sftp_jobs", sa.Column("attempt", sa.Integer(), server_default="1", nullable=False)
    )
    op.add_column(
        "sftp_jobs",
        sa.Column("next_retry_at", postgresql.TIMESTAMP(timezone=True), nullable=True),
    )
    op.create_index(
        "ix_sftp_jobs_retry_due",
        "sftp_jobs",
        ["next_retry_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending' AND next_retry_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_sftp_jobs_retry_due",
        table_name="sftp_jobs",
        postgresql_where=sa.text("status = 'pending' AND next_retry_at IS NOT NULL"),
    )
    op.drop_column("sftp_jobs", "next_retry_at")
    op.drop_column("sftp_jobs", "attempt")
