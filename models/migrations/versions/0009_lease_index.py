"""dial queue: the lease walk skips leased and waiting numbers on the index itself

Revision ID: 0009_lease_index
Revises: 0009_callable_counts

ix_phone_numbers_dial_queue gains two trailing key columns: `due` (the later of
next_attempt_at and leased_until, -infinity when both are NULL) and call_attempts. They do not
change the walk's order ((project_id, priority DESC, id) is already unique), but a btree checks
conditions on key columns on the index entry, before it fetches the row: numbers leased to
someone or waiting for their retry - which pile up at the front of the walk as a project is
worked - are passed over at index speed instead of one heap fetch each
(models/dialing/queue.py, docs/benchmarks.md).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009_lease_index"
down_revision: str | None = "0009_callable_counts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Must stay identical to models/dialing/queue.py DUE (the planner matches the expression).
DUE = "COALESCE(GREATEST(next_attempt_at, leased_until), '-infinity'::timestamp with time zone)"


def upgrade() -> None:
    op.drop_index("ix_phone_numbers_dial_queue", table_name="phone_numbers")
    op.execute(
        "CREATE INDEX ix_phone_numbers_dial_queue ON phone_numbers "
        f"(project_id, priority DESC, id, ({DUE}), call_attempts) WHERE status <> 'success'"
    )


def downgrade() -> None:
    op.drop_index("ix_phone_numbers_dial_queue", table_name="phone_numbers")
    op.execute(
        "CREATE INDEX ix_phone_numbers_dial_queue ON phone_numbers "
        "(project_id, priority DESC, id) WHERE status <> 'success'"
    )
