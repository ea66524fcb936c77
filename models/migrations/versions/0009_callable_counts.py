"""callable counts: per-project counts by zone / candidate set / DNC state, kept by triggers

Revision ID: 0009_callable_counts
Revises: 0008_queue

The callable summary (`GET /api/projects/{id}/callable/`) needs, per project, how many numbers
sit in each (timezone, timezone_set_id) group and how many of them a do-not-call entry covers.
Counting that from phone_numbers costs a scan of the project (1.5 s for 2M numbers); these
statement-level triggers keep it in `callable_counts` instead, exact and transactional:

* a number's DNC state is stored as `listed_until`, the latest expiry of the entries covering
  it (NULL: none; 'infinity': one never expires), so an entry's expiry needs no write: the
  reader compares with its `now`;
* every trigger appends one delta row per changed group (no UPDATE of a shared counter row, so
  concurrent loads never wait for each other); the reader sums, and compacts now and then;
* a number's state joins two tables, so a writer of one must see what a concurrent writer of
  the other committed: each trigger takes, before it reads the other table, transaction-level
  advisory locks (shared for numbers; exclusive for DNC entries of a project, and for global
  entries on the global key), held to commit. The trigger runs at the end of its statement, so
  a load holds them only from the end of its INSERT to its commit. Writes must run at READ
  COMMITTED (each query a fresh snapshot) or SERIALIZABLE; REPEATABLE READ is refused.
* UPDATEs that change none of (project, phone, timezone, candidate set) add nothing and take no
  lock (the SoftPhone webhook's status updates, dial-queue leases).
* ENABLE ALWAYS: the loader's `session_replication_role = replica` (no FK triggers) must not
  skip them (models/bulk_insert.py `may_skip_fk_checks`).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009_callable_counts"
down_revision: str | None = "0008_queue"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = postgresql.TIMESTAMP(timezone=True)

# A number's listed_until against the current dnc_entries (the rule of eligibility.dnc_listed,
# without the time test: the reader applies that).
_COVER = """(d.project_id IS NULL OR d.project_id = r.project_id)"""

_LOCK_FN = """
CREATE FUNCTION callable_counts_lock(projects bigint[], mode text) RETURNS void
LANGUAGE plpgsql AS $$
-- mode 'numbers': shared global + shared per project; 'project_dnc': shared global + exclusive
-- per project; 'global_dnc': exclusive global. Global key first, projects ascending: one order.
DECLARE
    k int := hashtext('numbase:callable_counts');
    p bigint;
BEGIN
    IF current_setting('transaction_isolation') = 'repeatable read' THEN
        RAISE EXCEPTION 'callable_counts: write phone_numbers / dnc_entries at READ COMMITTED '
                        'or SERIALIZABLE, not REPEATABLE READ';
    END IF;
    IF mode = 'global_dnc' THEN
        PERFORM pg_advisory_xact_lock(k, 0);
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock_shared(k, 0);
    FOR p IN SELECT DISTINCT x FROM unnest(projects) x WHERE x IS NOT NULL ORDER BY x LOOP
        IF mode = 'project_dnc' THEN
            PERFORM pg_advisory_xact_lock(k, (p % 2147483647)::int);
        ELSE
            PERFORM pg_advisory_xact_lock_shared(k, (p % 2147483647)::int);
        END IF;
    END LOOP;
END $$
"""

# UPDATE side: `rows_in` (id, project_id, phone_number, timezone, timezone_set_id, sign) of
# the rows whose counted key changed -> one delta per group. The DNC join is a hash join of
# those rows with the entries.
_NUMBERS_DELTA = """
WITH rows_in AS {materialized} ({rows_in}),
listed AS (
    SELECT r.id, r.sign, r.project_id, r.timezone, r.timezone_set_id,
           max(coalesce(d.expires_at, 'infinity')) AS until
    FROM rows_in r JOIN dnc_entries d ON d.phone_number = r.phone_number AND {cover}
    GROUP BY r.id, r.sign, r.project_id, r.timezone, r.timezone_set_id
), delta AS (
    SELECT project_id, timezone, timezone_set_id, NULL::timestamptz AS until, sum(sign) AS n
    FROM rows_in GROUP BY 1, 2, 3
    UNION ALL
    SELECT project_id, timezone, timezone_set_id, NULL, -sum(sign) FROM listed GROUP BY 1, 2, 3
    UNION ALL
    SELECT project_id, timezone, timezone_set_id, until, sum(sign) FROM listed GROUP BY 1, 2, 3, 4
)
INSERT INTO callable_counts (project_id, timezone, timezone_set_id, listed_until, numbers)
SELECT project_id, timezone, timezone_set_id, until, sum(n) FROM delta
GROUP BY 1, 2, 3, 4 HAVING sum(n) <> 0
"""

# INSERT / DELETE: a plain transition table `{t}`, `{sign}` +1 / -1. Two scans of it: the
# totals per group (no DNC read, so before the lock; it also names the projects to lock), then
# the DNC-listed rows moved from "not listed" to their `listed_until`.
_PLAIN_FN = """
CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    projects bigint[];
BEGIN
    WITH ins AS (
        INSERT INTO callable_counts (project_id, timezone, timezone_set_id, listed_until,
                                     numbers)
        SELECT project_id, timezone, timezone_set_id, NULL, {sign} * count(*)
        FROM {t} GROUP BY 1, 2, 3
        RETURNING project_id
    )
    SELECT array_agg(DISTINCT project_id) INTO projects FROM ins;
    IF projects IS NULL THEN
        RETURN NULL;  -- no row
    END IF;
    PERFORM callable_counts_lock(projects, 'numbers');
    WITH listed AS (
        SELECT r.project_id, r.timezone, r.timezone_set_id,
               max(coalesce(d.expires_at, 'infinity')) AS until
        FROM {t} r JOIN dnc_entries d ON d.phone_number = r.phone_number AND {cover}
        GROUP BY r.id, r.project_id, r.timezone, r.timezone_set_id
    ), delta AS (
        SELECT project_id, timezone, timezone_set_id, NULL::timestamptz AS until, -count(*) AS n
        FROM listed GROUP BY 1, 2, 3
        UNION ALL
        SELECT project_id, timezone, timezone_set_id, until, count(*) FROM listed
        GROUP BY 1, 2, 3, 4
    )
    INSERT INTO callable_counts (project_id, timezone, timezone_set_id, listed_until, numbers)
    SELECT project_id, timezone, timezone_set_id, until, {sign} * sum(n) FROM delta
    GROUP BY 1, 2, 3, 4;
    RETURN NULL;
END $$
"""

# An UPDATE: only rows whose counted key changed, old side out, new side in.
_KEY_CHANGED = """
    FROM old_rows o JOIN new_rows n ON n.id = o.id
    WHERE (o.project_id, o.phone_number, o.timezone, o.timezone_set_id)
          IS DISTINCT FROM (n.project_id, n.phone_number, n.timezone, n.timezone_set_id)
"""
_CHANGED = f"""
    SELECT o.id, o.project_id, o.phone_number, o.timezone, o.timezone_set_id, -1 AS sign
    {_KEY_CHANGED}
    UNION ALL
    SELECT n.id, n.project_id, n.phone_number, n.timezone, n.timezone_set_id, 1
    {_KEY_CHANGED}
"""


def _update_fn(name: str) -> str:
    """The UPDATE trigger function: returns at once when no counted column changed (the common
    case: status updates), else the changed rows' join is computed once (MATERIALIZED)."""
    return f"""
CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    projects bigint[];
BEGIN
    IF NOT EXISTS (SELECT 1 {_KEY_CHANGED}) THEN
        RETURN NULL;
    END IF;
    SELECT array_agg(project_id) INTO projects
    FROM (SELECT DISTINCT o.project_id {_KEY_CHANGED}
          UNION SELECT n.project_id {_KEY_CHANGED}) p;
    PERFORM callable_counts_lock(projects, 'numbers');
    {_NUMBERS_DELTA.format(materialized="MATERIALIZED", rows_in=_CHANGED, cover=_COVER)};
    RETURN NULL;
END $$
"""


# DNC side: the numbers the changed entries reach, their listed_until before and after the
# statement (before = current entries less the statement's new rows, plus its old rows).
# `{new}` / `{old}`: the transition tables, or an empty one of the same shape where the event
# has none (PL/pgSQL cannot name a transition table the trigger lacks).
_DNC_BODY = f"""
DECLARE
    globals boolean;
    projects bigint[];
BEGIN
    SELECT bool_or(project_id IS NULL), array_agg(DISTINCT project_id) INTO globals, projects
    FROM (SELECT n.project_id FROM {{new}} n UNION ALL SELECT o.project_id FROM {{old}} o) c;
    IF globals IS NULL THEN
        RETURN NULL;  -- no row changed (an upsert that found nothing to do)
    END IF;
    PERFORM callable_counts_lock(projects, CASE WHEN globals THEN 'global_dnc'
                                                ELSE 'project_dnc' END);
    WITH changed AS (
        SELECT n.project_id, n.phone_number FROM {{new}} n
        UNION SELECT o.project_id, o.phone_number FROM {{old}} o
    ), touched AS (
        SELECT DISTINCT r.id, r.project_id, r.phone_number, r.timezone, r.timezone_set_id
        FROM changed c JOIN phone_numbers r ON r.phone_number = c.phone_number
         AND (c.project_id IS NULL OR c.project_id = r.project_id)
    ), after_ AS (
        SELECT r.id, max(coalesce(d.expires_at, 'infinity')) AS until
        FROM touched r JOIN dnc_entries d ON d.phone_number = r.phone_number AND {_COVER}
        GROUP BY r.id
    ), before_ AS (
        SELECT id, max(until) AS until FROM (
            SELECT r.id, coalesce(d.expires_at, 'infinity') AS until
            FROM touched r JOIN dnc_entries d ON d.phone_number = r.phone_number AND {_COVER}
            WHERE NOT EXISTS (SELECT 1 FROM {{new}} n WHERE n.id = d.id)
            UNION ALL
            SELECT r.id, coalesce(d.expires_at, 'infinity')
            FROM touched r JOIN {{old}} d ON d.phone_number = r.phone_number AND {_COVER}
        ) x GROUP BY id
    ), delta AS (
        SELECT r.project_id, r.timezone, r.timezone_set_id, a.until, 1 AS n
        FROM touched r LEFT JOIN after_ a ON a.id = r.id
        UNION ALL
        SELECT r.project_id, r.timezone, r.timezone_set_id, b.until, -1
        FROM touched r LEFT JOIN before_ b ON b.id = r.id
    )
    INSERT INTO callable_counts (project_id, timezone, timezone_set_id, listed_until, numbers)
    SELECT project_id, timezone, timezone_set_id, until, sum(n) FROM delta
    GROUP BY 1, 2, 3, 4 HAVING sum(n) <> 0;
    RETURN NULL;
END
"""


def _dnc_fn(name: str, new: str | None, old: str | None) -> str:
    empty = f"(SELECT * FROM {new or old} WHERE false)"
    body = _DNC_BODY.format(new=new or empty, old=old or empty)
    return f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $${body}$$"


# The whole table from scratch: the back-fill below, after a TRUNCATE of either table, and by
# hand after a restore that skipped triggers (`SELECT callable_counts_rebuild()`).
_REBUILD_FN = f"""
CREATE FUNCTION callable_counts_rebuild() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    LOCK TABLE phone_numbers, dnc_entries IN SHARE MODE;
    DELETE FROM callable_counts;
    INSERT INTO callable_counts (project_id, timezone, timezone_set_id, listed_until, numbers)
    SELECT r.project_id, r.timezone, r.timezone_set_id, l.until, count(*)
    FROM phone_numbers r LEFT JOIN (
        SELECT r.id, max(coalesce(d.expires_at, 'infinity')) AS until
        FROM dnc_entries d JOIN phone_numbers r ON r.phone_number = d.phone_number AND {_COVER}
        GROUP BY r.id
    ) l ON l.id = r.id
    GROUP BY 1, 2, 3, 4;
END $$
"""

_TRUNCATE_FN = """
CREATE FUNCTION callable_counts_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM callable_counts_rebuild();
    RETURN NULL;
END $$
"""

_TRIGGERS = (
    ("callable_counts_ins", "phone_numbers", "INSERT", "NEW TABLE AS new_rows",
     "callable_counts_numbers_ins"),
    ("callable_counts_upd", "phone_numbers", "UPDATE",
     "OLD TABLE AS old_rows NEW TABLE AS new_rows", "callable_counts_numbers_upd"),
    ("callable_counts_del", "phone_numbers", "DELETE", "OLD TABLE AS old_rows",
     "callable_counts_numbers_del"),
    ("callable_counts_dnc_ins", "dnc_entries", "INSERT", "NEW TABLE AS new_rows",
     "callable_counts_dnc_ins"),
    ("callable_counts_dnc_upd", "dnc_entries", "UPDATE",
     "OLD TABLE AS old_rows NEW TABLE AS new_rows", "callable_counts_dnc_upd"),
    ("callable_counts_dnc_del", "dnc_entries", "DELETE", "OLD TABLE AS old_rows",
     "callable_counts_dnc_del"),
)  # fmt: skip


def upgrade() -> None:
    op.create_table(
        "callable_counts",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=True),
        sa.Column("timezone_set_id", sa.BigInteger(), nullable=True),
        sa.Column("listed_until", TZ, nullable=True),
        sa.Column("numbers", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callable_counts")),
    )
    op.create_index("ix_callable_counts_project_id", "callable_counts", ["project_id"])
    op.execute(_LOCK_FN)
    for name, sign, table in (("ins", 1, "new_rows"), ("del", -1, "old_rows")):
        op.execute(
            _PLAIN_FN.format(
                name=f"callable_counts_numbers_{name}", sign=sign, t=table, cover=_COVER
            )
        )
    op.execute(_update_fn("callable_counts_numbers_upd"))
    op.execute(_dnc_fn("callable_counts_dnc_ins", "new_rows", None))
    op.execute(_dnc_fn("callable_counts_dnc_upd", "new_rows", "old_rows"))
    op.execute(_dnc_fn("callable_counts_dnc_del", None, "old_rows"))
    op.execute(_REBUILD_FN)
    op.execute(_TRUNCATE_FN)
    for trigger, table, event, refs, fn in _TRIGGERS:
        op.execute(
            f"CREATE TRIGGER {trigger} AFTER {event} ON {table} REFERENCING {refs} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {fn}()"
        )
        op.execute(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {trigger}")
    for table in ("phone_numbers", "dnc_entries"):
        trigger = f"callable_counts_{table}_truncate"
        op.execute(
            f"CREATE TRIGGER {trigger} AFTER TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION callable_counts_truncated()"
        )
        op.execute(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {trigger}")
    # The back-fill of every existing number, under the tables' SHARE lock (no write between
    # it and the triggers): one scan of phone_numbers (~10-20 s for 10M rows).
    op.execute("SELECT callable_counts_rebuild()")


def downgrade() -> None:
    for trigger, table, *_ in _TRIGGERS:
        op.execute(f"DROP TRIGGER {trigger} ON {table}")
    for table in ("phone_numbers", "dnc_entries"):
        op.execute(f"DROP TRIGGER callable_counts_{table}_truncate ON {table}")
    for fn in (
        "callable_counts_truncated()", "callable_counts_rebuild()", "callable_counts_dnc_upd()",
        "callable_counts_dnc_ins()", "callable_counts_dnc_del()",
        "callable_counts_numbers_ins()", "callable_counts_numbers_upd()",
        "callable_counts_numbers_del()", "callable_counts_lock(bigint[], text)",
    ):  # fmt: skip
        op.execute(f"DROP FUNCTION {fn}")
    op.drop_index("ix_callable_counts_project_id", table_name="callable_counts")
    op.drop_table("callable_counts")
