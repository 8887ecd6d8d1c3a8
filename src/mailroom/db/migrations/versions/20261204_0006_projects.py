"""projects: every key and email belongs to one; counters per project

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 00:00:00

Every key and every email that exists goes into the project ``default``. The new
columns are added with that project's id as a constant default and the default then
dropped: PostgreSQL records the value once instead of rewriting the table, so this
costs the same at a million emails as at none (the new indexes aside).

The counters of migration 0003 gain the project in their key, so that a project's
report and totals read its own counter rows; the statement triggers and the fold keep
their design (append-only deltas, one folder at a time), with the project carried along.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Keep in step with mailroom.projects.models (DEFAULT_PROJECT_ID, DEFAULT_PROJECT_NAME).
_DEFAULT_ID = "00000000-0000-4000-8000-000000000001"
_DEFAULT_NAME = "default"
# Keep in step with mailroom.emails.buckets (BUCKET, ORIGIN) and .counters (FOLD_LOCK).
_BUCKET = "date_bin('15 minutes', {column}, TIMESTAMPTZ '2000-01-01 00:00:00+00')"
_FOLD_LOCK = 0x6D61696C636E74


def _bucket(column: str) -> str:
    return _BUCKET.format(column=column)


def _counting_functions(by_project: bool) -> list[str]:
    """The three trigger functions and the fold, keyed by project (or, to go back to 0005,
    not): the same SQL as migration 0003's with the project carried through."""
    p = "project_id, " if by_project else ""
    o = "o.project_id, " if by_project else ""
    n = "n.project_id, " if by_project else ""
    moved = "o.project_id IS DISTINCT FROM n.project_id OR " if by_project else ""

    def append(deltas: str) -> str:
        return f"""
        INSERT INTO email_count_deltas ({p}bucket, status, created, purged, present)
        SELECT {p}bucket, status, sum(created), sum(purged), sum(present)
        FROM ({deltas}) AS d
        GROUP BY {p}bucket, status
        HAVING sum(created) <> 0 OR sum(purged) <> 0 OR sum(present) <> 0;
        """

    changed = (
        f"{moved}o.status IS DISTINCT FROM n.status OR o.created_at IS DISTINCT FROM n.created_at"
    )
    inserted = f"""
        SELECT {p}{_bucket("created_at")} AS bucket, status,
               1 AS created, 0 AS purged, 1 AS present
        FROM new_rows
    """
    # A row that moved cell (status, in principle bucket or project): one out, one in.
    updated = f"""
        SELECT {o}{_bucket("o.created_at")} AS bucket, o.status, -1 AS created, 0 AS purged,
               -1 AS present
        FROM old_rows o JOIN new_rows n ON n.id = o.id
        WHERE {changed}
        UNION ALL
        SELECT {n}{_bucket("n.created_at")}, n.status, 1, 0, 1
        FROM old_rows o JOIN new_rows n ON n.id = o.id
        WHERE {changed}
    """
    # A purge keeps `created` (the report of that day stays true) and counts what is gone.
    deleted = f"""
        SELECT {p}{_bucket("created_at")} AS bucket, status,
               0 AS created, 1 AS purged, -1 AS present
        FROM old_rows
    """
    triggers = [
        f"""
        CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            {append(deltas)}
            RETURN NULL;
        END
        $$;
        """
        for name, deltas in (
            ("mailroom_count_inserted", inserted),
            ("mailroom_count_updated", updated),
            ("mailroom_count_deleted", deleted),
        )
    ]
    fold = f"""
    CREATE OR REPLACE FUNCTION mailroom_fold_counts() RETURNS bigint LANGUAGE plpgsql AS $$
    DECLARE
        folded bigint;
    BEGIN
        -- One folder at a time; the others have nothing to do this round.
        IF NOT pg_try_advisory_xact_lock({_FOLD_LOCK}) THEN
            RETURN 0;
        END IF;
        -- Deltas committed after this statement's snapshot stay for the next round.
        WITH moved AS (
            DELETE FROM email_count_deltas
            RETURNING {p}bucket, status, created, purged, present
        ),
        by_bucket AS (
            INSERT INTO email_counts AS c ({p}bucket, status, created, purged)
            SELECT {p}bucket, status, sum(created), sum(purged) FROM moved
            GROUP BY {p}bucket, status
            ON CONFLICT ({p}bucket, status) DO UPDATE
            SET created = c.created + EXCLUDED.created, purged = c.purged + EXCLUDED.purged
        ),
        totals AS (
            INSERT INTO email_status_totals AS t ({p}status, present)
            SELECT {p}status, sum(present) FROM moved GROUP BY {p}status
            ON CONFLICT ({p}status) DO UPDATE SET present = t.present + EXCLUDED.present
        )
        SELECT count(*) INTO folded FROM moved;
        RETURN folded;
    END
    $$;
    """
    return [*triggers, fold]


def _add_project_column(table: str) -> None:
    """project_id, NOT NULL, every existing row in the default project (no table rewrite)."""
    op.add_column(
        table,
        sa.Column(
            "project_id", sa.UUID(), server_default=sa.text(f"'{_DEFAULT_ID}'"), nullable=False
        ),
    )
    op.alter_column(table, "project_id", server_default=None)


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_projects")),
        sa.UniqueConstraint("name", name=op.f("uq_projects_name")),
    )
    op.execute(f"INSERT INTO projects (id, name) VALUES ('{_DEFAULT_ID}', '{_DEFAULT_NAME}')")

    # Adding the column locks emails until the migration commits: no email is written,
    # nor counted, while the counters change below.
    for table in ("api_keys", "emails"):
        _add_project_column(table)
        op.create_foreign_key(
            op.f(f"fk_{table}_project_id_projects"), table, "projects", ["project_id"], ["id"]
        )
    op.create_index(
        "ix_emails_project_id_created_at_id",
        "emails",
        ["project_id", "created_at", "id"],
        postgresql_include=["status"],
    )
    op.create_index(
        "ix_emails_project_id_status_created_at_id",
        "emails",
        ["project_id", "status", "created_at", "id"],
    )

    # The counters: every row so far is the default project's.
    for table in ("email_count_deltas", "email_counts", "email_status_totals"):
        _add_project_column(table)
    op.drop_constraint(op.f("pk_email_counts"), "email_counts", type_="primary")
    op.create_primary_key(
        op.f("pk_email_counts"), "email_counts", ["project_id", "bucket", "status"]
    )
    op.create_index("ix_email_counts_bucket", "email_counts", ["bucket"])
    op.drop_constraint(op.f("pk_email_status_totals"), "email_status_totals", type_="primary")
    op.create_primary_key(
        op.f("pk_email_status_totals"), "email_status_totals", ["project_id", "status"]
    )
    for function in _counting_functions(by_project=True):
        op.execute(function)


def downgrade() -> None:
    for function in _counting_functions(by_project=False):
        op.execute(function)
    # Each cell and total becomes the sum of its projects' (the deltas simply lose theirs).
    op.execute(
        "CREATE TEMPORARY TABLE mailroom_counts ON COMMIT DROP AS "
        "SELECT bucket, status, sum(created) AS created, sum(purged) AS purged "
        "FROM email_counts GROUP BY bucket, status"
    )
    op.execute(
        "CREATE TEMPORARY TABLE mailroom_totals ON COMMIT DROP AS "
        "SELECT status, sum(present) AS present FROM email_status_totals GROUP BY status"
    )
    op.execute("DELETE FROM email_counts")
    op.execute("DELETE FROM email_status_totals")
    op.drop_index("ix_email_counts_bucket", table_name="email_counts")
    for table, key in (("email_counts", ["bucket", "status"]), ("email_status_totals", ["status"])):
        op.drop_constraint(op.f(f"pk_{table}"), table, type_="primary")
        op.drop_column(table, "project_id")
        op.create_primary_key(op.f(f"pk_{table}"), table, key)
    op.execute(
        "INSERT INTO email_counts (bucket, status, created, purged) "
        "SELECT bucket, status, created, purged FROM mailroom_counts"
    )
    op.execute(
        "INSERT INTO email_status_totals (status, present) "
        "SELECT status, present FROM mailroom_totals"
    )
    op.drop_column("email_count_deltas", "project_id")

    op.drop_index("ix_emails_project_id_status_created_at_id", table_name="emails")
    op.drop_index("ix_emails_project_id_created_at_id", table_name="emails")
    for table in ("emails", "api_keys"):
        op.drop_constraint(op.f(f"fk_{table}_project_id_projects"), table, type_="foreignkey")
        op.drop_column(table, "project_id")
    op.drop_table("projects")
