"""email counters per 15-minute bucket and per status, kept by triggers

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 00:00:00

Statement-level triggers with transition tables: a bulk insert of 500 emails, or a
worker finishing 50 attempts in one UPDATE, costs one grouped upsert, not one per row.
Every counter row is upserted in (bucket, status) order, so two transactions touching
the same rows lock them in the same order and cannot deadlock.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Keep in step with mailroom.emails.counters (BUCKET, ORIGIN, SHARDS).
_BUCKET = "date_bin('15 minutes', {column}, TIMESTAMPTZ '2000-01-01 00:00:00+00')"
_SHARD = "(pg_backend_pid() % 8)::smallint"


def _bucket(column: str) -> str:
    return _BUCKET.format(column=column)


def _apply(deltas: str) -> str:
    """SQL that adds `deltas` (bucket, status, created, purged, present) to both tables."""
    return f"""
    WITH d AS ({deltas}),
    by_bucket AS (
        INSERT INTO email_counts AS c (bucket, status, shard, created, purged)
        SELECT bucket, status, {_SHARD}, sum(created), sum(purged)
        FROM d GROUP BY bucket, status
        HAVING sum(created) <> 0 OR sum(purged) <> 0
        ORDER BY bucket, status
        ON CONFLICT (bucket, status, shard) DO UPDATE
        SET created = c.created + EXCLUDED.created, purged = c.purged + EXCLUDED.purged
    )
    INSERT INTO email_status_totals AS t (status, shard, present)
    SELECT status, {_SHARD}, sum(present)
    FROM d GROUP BY status HAVING sum(present) <> 0
    ORDER BY status
    ON CONFLICT (status, shard) DO UPDATE SET present = t.present + EXCLUDED.present;
    """


_INSERTED = f"""
    SELECT {_bucket("created_at")} AS bucket, status,
           1 AS created, 0 AS purged, 1 AS present
    FROM new_rows
"""
# A row that moved status (or, in principle, bucket): one out of the old cell, one in.
_UPDATED = f"""
    SELECT {_bucket("o.created_at")} AS bucket, o.status, -1 AS created, 0 AS purged,
           -1 AS present
    FROM old_rows o JOIN new_rows n ON n.id = o.id
    WHERE o.status IS DISTINCT FROM n.status OR o.created_at IS DISTINCT FROM n.created_at
    UNION ALL
    SELECT {_bucket("n.created_at")}, n.status, 1, 0, 1
    FROM old_rows o JOIN new_rows n ON n.id = o.id
    WHERE o.status IS DISTINCT FROM n.status OR o.created_at IS DISTINCT FROM n.created_at
"""
# A purge keeps `created` (the report of that day stays true) and counts what is gone.
_DELETED = f"""
    SELECT {_bucket("created_at")} AS bucket, status,
           0 AS created, 1 AS purged, -1 AS present
    FROM old_rows
"""


def _trigger_function(name: str, deltas: str) -> str:
    return f"""
    CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        {_apply(deltas)}
        RETURN NULL;
    END
    $$;
    """


def upgrade() -> None:
    op.create_table(
        "email_counts",
        sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("shard", sa.SmallInteger(), nullable=False),
        sa.Column("created", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("purged", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("bucket", "status", "shard", name=op.f("pk_email_counts")),
    )
    op.create_table(
        "email_status_totals",
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("shard", sa.SmallInteger(), nullable=False),
        sa.Column("present", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("status", "shard", name=op.f("pk_email_status_totals")),
    )
    op.execute(_trigger_function("mailroom_count_inserted", _INSERTED))
    op.execute(_trigger_function("mailroom_count_updated", _UPDATED))
    op.execute(_trigger_function("mailroom_count_deleted", _DELETED))
    op.execute(
        "CREATE TRIGGER emails_count_inserted AFTER INSERT ON emails "
        "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
        "EXECUTE FUNCTION mailroom_count_inserted()"
    )
    op.execute(
        "CREATE TRIGGER emails_count_updated AFTER UPDATE ON emails "
        "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT "
        "EXECUTE FUNCTION mailroom_count_updated()"
    )
    op.execute(
        "CREATE TRIGGER emails_count_deleted AFTER DELETE ON emails "
        "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT "
        "EXECUTE FUNCTION mailroom_count_deleted()"
    )
    # Count what is already there (the triggers see only what comes next). Emails
    # written meanwhile wait on this lock, so nothing is counted twice or missed.
    op.execute("LOCK TABLE emails IN SHARE MODE")
    op.execute(
        f"""
        INSERT INTO email_counts (bucket, status, shard, created, purged)
        SELECT {_bucket("created_at")}, status, 0, count(*), 0 FROM emails GROUP BY 1, 2
        """
    )
    op.execute(
        "INSERT INTO email_status_totals (status, shard, present) "
        "SELECT status, 0, count(*) FROM emails GROUP BY status"
    )


def downgrade() -> None:
    for trigger in ("emails_count_inserted", "emails_count_updated", "emails_count_deleted"):
        op.execute(f"DROP TRIGGER IF EXISTS {trigger} ON emails")
    for function in ("mailroom_count_inserted", "mailroom_count_updated", "mailroom_count_deleted"):
        op.execute(f"DROP FUNCTION IF EXISTS {function}()")
    op.drop_table("email_status_totals")
    op.drop_table("email_counts")
