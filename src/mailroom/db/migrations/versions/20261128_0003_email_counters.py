"""email counters per 15-minute bucket and per status, kept by triggers

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 00:00:00

Writers never update a shared counter row: statement-level triggers (with transition
tables, so a bulk insert of 500 emails costs one grouped insert) append deltas to
``email_count_deltas``, which takes no lock another transaction could wait on, so
counters can neither serialise commits nor deadlock. ``mailroom_fold_counts()``, run
every second by one process at a time, moves the deltas into ``email_counts`` and
``email_status_totals`` in one transaction; readers add the deltas not yet folded
(see mailroom.emails.log_repository), so every count is exact at any moment.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Keep in step with mailroom.emails.buckets (BUCKET, ORIGIN) and .counters (FOLD_LOCK).
_BUCKET = "date_bin('15 minutes', {column}, TIMESTAMPTZ '2000-01-01 00:00:00+00')"
_FOLD_LOCK = 0x6D61696C636E74


def _bucket(column: str) -> str:
    return _BUCKET.format(column=column)


def _append(deltas: str) -> str:
    """SQL that appends `deltas` (bucket, status, created, purged, present), grouped."""
    return f"""
    INSERT INTO email_count_deltas (bucket, status, created, purged, present)
    SELECT bucket, status, sum(created), sum(purged), sum(present)
    FROM ({deltas}) AS d
    GROUP BY bucket, status
    HAVING sum(created) <> 0 OR sum(purged) <> 0 OR sum(present) <> 0;
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
        {_append(deltas)}
        RETURN NULL;
    END
    $$;
    """


_FOLD = f"""
CREATE FUNCTION mailroom_fold_counts() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    folded bigint;
BEGIN
    -- One folder at a time; the others have nothing to do this round.
    IF NOT pg_try_advisory_xact_lock({_FOLD_LOCK}) THEN
        RETURN 0;
    END IF;
    -- Deltas committed after this statement's snapshot stay for the next round.
    WITH moved AS (
        DELETE FROM email_count_deltas RETURNING bucket, status, created, purged, present
    ),
    by_bucket AS (
        INSERT INTO email_counts AS c (bucket, status, created, purged)
        SELECT bucket, status, sum(created), sum(purged) FROM moved
        GROUP BY bucket, status
        ON CONFLICT (bucket, status) DO UPDATE
        SET created = c.created + EXCLUDED.created, purged = c.purged + EXCLUDED.purged
    ),
    totals AS (
        INSERT INTO email_status_totals AS t (status, present)
        SELECT status, sum(present) FROM moved GROUP BY status
        ON CONFLICT (status) DO UPDATE SET present = t.present + EXCLUDED.present
    )
    SELECT count(*) INTO folded FROM moved;
    RETURN folded;
END
$$;
"""


def upgrade() -> None:
    op.create_table(
        "email_counts",
        sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("purged", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("bucket", "status", name=op.f("pk_email_counts")),
    )
    op.create_table(
        "email_status_totals",
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("present", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("status", name=op.f("pk_email_status_totals")),
    )
    op.create_table(
        "email_count_deltas",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("purged", sa.BigInteger(), nullable=False),
        sa.Column("present", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_count_deltas")),
    )
    op.execute(_trigger_function("mailroom_count_inserted", _INSERTED))
    op.execute(_trigger_function("mailroom_count_updated", _UPDATED))
    op.execute(_trigger_function("mailroom_count_deleted", _DELETED))
    op.execute(_FOLD)
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
    # written meanwhile wait on the triggers' lock, so nothing is counted twice or missed.
    op.execute(
        f"""
        INSERT INTO email_counts (bucket, status, created, purged)
        SELECT {_bucket("created_at")}, status, count(*), 0 FROM emails GROUP BY 1, 2
        """
    )
    op.execute(
        "INSERT INTO email_status_totals (status, present) "
        "SELECT status, count(*) FROM emails GROUP BY status"
    )


def downgrade() -> None:
    for trigger in ("emails_count_inserted", "emails_count_updated", "emails_count_deleted"):
        op.execute(f"DROP TRIGGER IF EXISTS {trigger} ON emails")
    for function in (
        "mailroom_count_inserted",
        "mailroom_count_updated",
        "mailroom_count_deleted",
        "mailroom_fold_counts",
    ):
        op.execute(f"DROP FUNCTION IF EXISTS {function}()")
    op.drop_table("email_count_deltas")
    op.drop_table("email_status_totals")
    op.drop_table("email_counts")
