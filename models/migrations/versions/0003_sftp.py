"""sftp_jobs: the sha256 of the delivered bytes (a delivery's identity)

Revision ID: 0003_sftp
Revises: 0002_auth
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_sftp"
down_revision: str | None = "0002_auth"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("sftp_jobs", sa.Column("content_sha256", sa.String(length=64), nullable=True))
    # The inbox sensor looks up earlier deliveries of a project by their content.
    op.create_index(
        "ix_sftp_jobs_project_content",
        "sftp_jobs",
        ["project_id", "content_sha256"],
        unique=False,
        postgresql_where=sa.text("content_sha256 IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_sftp_jobs_project_content",
        table_name="sftp_jobs",
        postgresql_where=sa.text("content_sha256 IS NOT NULL"),
    )
    op.drop_column("sftp_jobs", "content_sha256")
