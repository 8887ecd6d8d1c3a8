"""text search and provider counts: trigram indexes on sender and subject; attempts
counted per provider

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 00:00:00

The dashboard filters the log by text a sender or subject contains, and the suppression
list by address text (``ILIKE '%…%'``). A B-tree cannot serve that, so a text few rows
contain read the whole table row by row; pg_trgm's GIN indexes find the rows holding
every trigram of the text instead. They keep GIN's pending list (``fastupdate``, the
default): inserts append to it and it is merged in bulk, which costs ingest nothing
measurable, where updating the index in place for each row cost about a tenth of it
(see docs/design.md, "Text search", and BENCHMARKS.md).

Attempts are counted per project, provider, outcome and 15-minute bucket of their end,
as migration 0003 counts emails: a statement trigger on ``delivery_attempts`` appends
deltas (append-only, so it never waits on another transaction), and
``mailroom_fold_provider_counts()``, run with the email counters' fold, moves them into
``provider_counts``. Readers add the deltas not folded yet, so a count is exact at any
moment and today's costs a few hundred rows, not a scan of the attempts.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Keep in step with mailroom.emails.buckets (BUCKET, ORIGIN).
_BUCKET = "date_bin('15 minutes', {column}, TIMESTAMPTZ '2000-01-01 00:00:00+00')"
_FOLD_LOCK = 0x6D61696C707276
_TEXT_COLUMNS = (("emails", "sender"), ("emails", "subject"), ("suppressions", "address"))

_COUNT_INSERTED = f"""
CREATE FUNCTION mailroom_count_attempts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO provider_count_deltas (project_id, bucket, provider, outcome, attempts)
    SELECT e.project_id, {_BUCKET.format(column="a.finished_at")}, a.provider, a.outcome,
           count(*)
    FROM new_rows a JOIN emails e ON e.id = a.email_id
    WHERE a.provider IS NOT NULL
    GROUP BY 1, 2, 3, 4;
    RETURN NULL;
END
$$;
"""

_FOLD = f"""
CREATE FUNCTION mailroom_fold_provider_counts() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    folded bigint;
BEGIN
    -- One folder at a time; the others have nothing to do this round.
    IF NOT pg_try_advisory_xact_lock({_FOLD_LOCK}) THEN
        RETURN 0;
    END IF;
    -- Deltas committed after this statement's snapshot stay for the next round.
    WITH moved AS (
        DELETE FROM provider_count_deltas
        RETURNING project_id, bucket, provider, outcome, attempts
    ),
    by_bucket AS (
        INSERT INTO provider_counts AS c (project_id, bucket, provider, outcome, attempts)
        SELECT project_id, bucket, provider, outcome, sum(attempts) FROM moved
        GROUP BY project_id, bucket, provider, outcome
        ON CONFLICT (project_id, bucket, provider, outcome) DO UPDATE
        SET attempts = c.attempts + EXCLUDED.attempts
    )
    SELECT count(*) INTO folded FROM moved;
    RETURN folded;
END
$$;
"""


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for table, column in _TEXT_COLUMNS:
        # A text with no trigram is matched as lower(column) LIKE … (db.text_search):
        # statistics of that expression let the planner tell a common text (walk the
        # newest first, stop at a page) from a rare one (one parallel scan, then sort).
        op.execute(f"CREATE STATISTICS {table}_{column}_lower ON (lower({column})) FROM {table}")
        op.create_index(
            f"ix_{table}_{column}_trgm",
            table,
            [column],
            postgresql_using="gin",
            postgresql_ops={column: "gin_trgm_ops"},
        )

    key = ("project_id", "bucket", "provider", "outcome")
    op.create_table(
        "provider_counts",
        sa.Column("project_id", sa.UUID(), nullable=False),
        sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
        sa.Column("provider", sa.String(length=63), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint(*key, name=op.f("pk_provider_counts")),
    )
    op.create_index("ix_provider_counts_bucket", "provider_counts", ["bucket"])
    op.create_table(
        "provider_count_deltas",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("project_id", sa.UUID(), nullable=False),
        sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
        sa.Column("provider", sa.String(length=63), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provider_count_deltas")),
    )
    op.execute(_COUNT_INSERTED)
    op.execute(_FOLD)
    op.execute(
        "CREATE TRIGGER delivery_attempts_counted AFTER INSERT ON delivery_attempts "
        "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
        "EXECUTE FUNCTION mailroom_count_attempts()"
    )
    # Count the attempts already there (the trigger sees only what comes next). Creating
    # the trigger holds back attempts written meanwhile until this commits, so none is
    # counted twice or missed.
    op.execute(
        f"""
        INSERT INTO provider_counts (project_id, bucket, provider, outcome, attempts)
        SELECT e.project_id, {_BUCKET.format(column="a.finished_at")}, a.provider, a.outcome,
               count(*)
        FROM delivery_attempts a JOIN emails e ON e.id = a.email_id
        WHERE a.provider IS NOT NULL
        GROUP BY 1, 2, 3, 4
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS delivery_attempts_counted ON delivery_attempts")
    op.execute("DROP FUNCTION IF EXISTS mailroom_count_attempts()")
    op.execute("DROP FUNCTION IF EXISTS mailroom_fold_provider_counts()")
    op.drop_table("provider_count_deltas")
    op.drop_index("ix_provider_counts_bucket", table_name="provider_counts")
    op.drop_table("provider_counts")
    for table, column in _TEXT_COLUMNS:
        op.drop_index(f"ix_{table}_{column}_trgm", table_name=table)
        op.execute(f"DROP STATISTICS IF EXISTS {table}_{column}_lower")
    # The extension stays: another schema in this database may use it.
