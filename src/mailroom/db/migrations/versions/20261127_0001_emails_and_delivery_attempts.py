"""emails and delivery attempts

Revision ID: 0001
Revises:
Create Date: 2026-11-27 21:07:40.403179
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "emails",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("sender", sa.Text(), nullable=False),
        sa.Column("to_addrs", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("cc_addrs", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column("bcc_addrs", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column("reply_to", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column("recipients", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("text_body", sa.Text(), nullable=True),
        sa.Column("html_body", sa.Text(), nullable=True),
        sa.Column(
            "headers", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False
        ),
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column("request_id", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=16), server_default="queued", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error_code", sa.Integer(), nullable=True),
        sa.Column("last_error_enhanced", sa.String(length=16), nullable=True),
        sa.Column("last_error_message", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "(status = 'failed') = (failed_at IS NOT NULL)",
            name=op.f("ck_emails_failed_at_iff_failed"),
        ),
        sa.CheckConstraint(
            "(status = 'sent') = (sent_at IS NOT NULL)", name=op.f("ck_emails_sent_at_iff_sent")
        ),
        sa.CheckConstraint(
            "status IN ('queued', 'sending', 'retrying', 'sent', 'failed')",
            name=op.f("ck_emails_status_known"),
        ),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_emails_attempts_non_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_emails")),
        sa.UniqueConstraint("message_id", name=op.f("uq_emails_message_id")),
    )
    op.create_index(
        "ix_emails_created_at_id",
        "emails",
        ["created_at", "id"],
        unique=False,
        postgresql_include=["status"],
    )
    op.create_index(
        "ix_emails_dispatchable",
        "emails",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('queued', 'retrying')"),
    )
    op.create_index(
        "ix_emails_recipients", "emails", ["recipients"], unique=False, postgresql_using="gin"
    )
    op.create_index(
        "ix_emails_sending_lease",
        "emails",
        ["lease_expires_at"],
        unique=False,
        postgresql_where=sa.text("status = 'sending'"),
    )
    op.create_index(
        "ix_emails_status_created_at_id", "emails", ["status", "created_at", "id"], unique=False
    )
    op.create_table(
        "delivery_attempts",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("email_id", sa.UUID(), nullable=False),
        sa.Column("attempt_number", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("smtp_code", sa.Integer(), nullable=True),
        sa.Column("enhanced_code", sa.String(length=16), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("refused_recipients", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.CheckConstraint(
            "outcome IN ('accepted', 'transient', 'permanent', 'unknown', 'interrupted')",
            name=op.f("ck_delivery_attempts_outcome_known"),
        ),
        sa.ForeignKeyConstraint(
            ["email_id"],
            ["emails.id"],
            name=op.f("fk_delivery_attempts_email_id_emails"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_attempts")),
        sa.UniqueConstraint(
            "email_id", "attempt_number", name=op.f("uq_delivery_attempts_email_id_attempt_number")
        ),
    )


def downgrade() -> None:
    op.drop_table("delivery_attempts")
    op.drop_index("ix_emails_status_created_at_id", table_name="emails")
    op.drop_index(
        "ix_emails_sending_lease",
        table_name="emails",
        postgresql_where=sa.text("status = 'sending'"),
    )
    op.drop_index("ix_emails_recipients", table_name="emails", postgresql_using="gin")
    op.drop_index(
        "ix_emails_dispatchable",
        table_name="emails",
        postgresql_where=sa.text("status IN ('queued', 'retrying')"),
    )
    op.drop_index("ix_emails_created_at_id", table_name="emails", postgresql_include=["status"])
    op.drop_table("emails")
