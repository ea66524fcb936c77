"""times of events are when they happened: clock_timestamp() defaults

`now()` is the start of the transaction. Audit rows and SoftPhone events are written inside
transactions that can last minutes (an import, a group commit waiting for a lock), so their
times read long before the event; `clock_timestamp()` is the moment the row is written. The
updated_at trigger likewise. Creation times of entities stay `now()`: written by one short
request each, and a bulk load's numbers share the load's start on purpose (one load, one time).

Revision ID: 0005_clock
Revises: 0003_sftp
Create Date: 2026-12-01 20:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_clock"
down_revision: str | None = "0003_sftp"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, column): "when it happened" columns filled by their server default.
EVENT_TIMES = (
    ("audit_log", "created_at"),
    ("call_events", "received_at"),
    ("login_failures", "attempted_at"),
    ("revoked_tokens", "revoked_at"),
)

_TRIGGER = """
CREATE OR REPLACE FUNCTION numbase_set_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := {now};
    RETURN NEW;
END $$
"""


def upgrade() -> None:
    for table, column in EVENT_TIMES:
        op.alter_column(table, column, server_default=sa.text("clock_timestamp()"))
    op.execute(_TRIGGER.format(now="clock_timestamp()"))


def downgrade() -> None:
    op.execute(_TRIGGER.format(now="now()"))
    for table, column in EVENT_TIMES:
        op.alter_column(table, column, server_default=sa.text("now()"))
