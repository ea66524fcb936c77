"""auth: token epochs, known login addresses, revoked token families

Revision ID: 0002_auth
Revises: 0001
Create Date: 2026-12-01 19:50:00

- users.token_epoch, bumped by a trigger whenever the password hash or the active flag changes
  (by any writer), so a password change or a deactivation ends every earlier session and a
  re-activation revives none;
- users.known_addresses, the addresses of the latest successful logins (login throttle);
- revoked_tokens may hold a whole token family (one login's rotated refresh tokens).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002_auth"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "users", sa.Column("token_epoch", sa.Integer(), server_default=sa.text("0"), nullable=False)
    )
    op.add_column(
        "users",
        sa.Column(
            "known_addresses",
            postgresql.ARRAY(postgresql.INET()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
    )
    op.drop_constraint(op.f("ck_revoked_tokens_token_type"), "revoked_tokens", type_="check")
    op.create_check_constraint(
        op.f("ck_revoked_tokens_token_type"),
        "revoked_tokens",
        "token_type IN ('access', 'refresh', 'family')",
    )
    op.execute(
        """
        CREATE FUNCTION numbase_bump_token_epoch() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            NEW.token_epoch := OLD.token_epoch + 1;
            RETURN NEW;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER trg_users_token_epoch BEFORE UPDATE OF password_hash, is_active ON users "
        "FOR EACH ROW WHEN (OLD.password_hash IS DISTINCT FROM NEW.password_hash "
        "OR OLD.is_active IS DISTINCT FROM NEW.is_active) "
        "EXECUTE FUNCTION numbase_bump_token_epoch()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS trg_users_token_epoch ON users")
    op.execute("DROP FUNCTION IF EXISTS numbase_bump_token_epoch()")
    op.execute("DELETE FROM revoked_tokens WHERE token_type = 'family'")
    op.drop_constraint(op.f("ck_revoked_tokens_token_type"), "revoked_tokens", type_="check")
    op.create_check_constraint(
        op.f("ck_revoked_tokens_token_type"),
        "revoked_tokens",
        "token_type IN ('access', 'refresh')",
    )
    op.drop_column("users", "known_addresses")
    op.drop_column("users", "token_epoch")
