"""scheduled and cancelled emails, manual retries, attachments, sandbox keys

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 01:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD_STATUSES = "'queued', 'sending', 'retrying', 'sent', 'failed'"
_NEW_STATUSES = "'queued', 'sending', 'retrying', 'sent', 'failed', 'scheduled', 'cancelled'"


def _status_check(statuses: str) -> None:
    op.drop_constraint(op.f("ck_emails_status_known"), "emails", type_="check")
    op.create_check_constraint(op.f("ck_emails_status_known"), "emails", f"status IN ({statuses})")


def _dispatchable_index(statuses: str) -> None:
    op.drop_index("ix_emails_dispatchable", table_name="emails")
    op.create_index(
        "ix_emails_dispatchable",
        "emails",
        ["next_attempt_at"],
        postgresql_where=sa.text(f"status IN ({statuses})"),
    )


def upgrade() -> None:
    op.add_column("emails", sa.Column("send_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("emails", sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "emails", sa.Column("sandbox", sa.Boolean(), server_default="false", nullable=False)
    )
    op.add_column(
        "emails",
        sa.Column("attempts_before_retry", sa.Integer(), server_default="0", nullable=False),
    )
    op.add_column(
        "emails",
        sa.Column("attachment_count", sa.SmallInteger(), server_default="0", nullable=False),
    )
    _status_check(_NEW_STATUSES)
    op.create_check_constraint(
        op.f("ck_emails_cancelled_at_iff_cancelled"),
        "emails",
        "(status = 'cancelled') = (cancelled_at IS NOT NULL)",
    )
    _dispatchable_index("'queued', 'retrying', 'scheduled'")
    # Purging an email cascades to its idempotency keys: without this index, a scan of
    # the table per deleted email (11 s per 1000 emails at 100k keys; 0.13 s with it).
    op.create_index(
        op.f("ix_idempotency_keys_email_id"), "idempotency_keys", ["email_id"], unique=False
    )
    op.add_column(
        "api_keys", sa.Column("sandbox", sa.Boolean(), server_default="false", nullable=False)
    )
    op.create_table(
        "email_attachments",
        sa.Column("email_id", sa.UUID(), nullable=False),
        sa.Column("position", sa.SmallInteger(), nullable=False),
        sa.Column("filename", sa.Text(), nullable=False),
        sa.Column("content_type", sa.Text(), nullable=False),
        sa.Column("content_id", sa.Text(), nullable=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("content", postgresql.BYTEA(), nullable=False),
        sa.ForeignKeyConstraint(
            ["email_id"],
            ["emails.id"],
            name=op.f("fk_email_attachments_email_id_emails"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("email_id", "position", name=op.f("pk_email_attachments")),
    )


def downgrade() -> None:
    op.drop_table("email_attachments")
    op.drop_column("api_keys", "sandbox")
    op.drop_index(op.f("ix_idempotency_keys_email_id"), table_name="idempotency_keys")
    op.execute("DELETE FROM emails WHERE status IN ('scheduled', 'cancelled')")
    _dispatchable_index("'queued', 'retrying'")
    op.drop_constraint(op.f("ck_emails_cancelled_at_iff_cancelled"), "emails", type_="check")
    _status_check(_OLD_STATUSES)
    for column in (
        "attachment_count",
        "attempts_before_retry",
        "sandbox",
        "cancelled_at",
        "send_at",
    ):
        op.drop_column("emails", column)
