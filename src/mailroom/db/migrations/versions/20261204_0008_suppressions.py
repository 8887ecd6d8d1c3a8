"""suppression list, delivery feedback, and the suppressed and bounced statuses

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 20:00:00

The new email columns have constant defaults, so PostgreSQL records them once instead
of rewriting the table. A bounced email keeps the sent_at of when it was sent.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD = "'queued', 'sending', 'retrying', 'sent', 'failed', 'scheduled', 'cancelled'"
_NEW = f"{_OLD}, 'suppressed', 'bounced'"


def _checks(statuses: str, sent: str) -> None:
    op.drop_constraint(op.f("ck_emails_status_known"), "emails", type_="check")
    op.create_check_constraint(op.f("ck_emails_status_known"), "emails", f"status IN ({statuses})")
    op.drop_constraint(op.f("ck_emails_sent_at_iff_sent"), "emails", type_="check")
    op.create_check_constraint(
        op.f("ck_emails_sent_at_iff_sent"), "emails", f"({sent}) = (sent_at IS NOT NULL)"
    )


def upgrade() -> None:
    op.add_column(
        "emails",
        sa.Column(
            "suppressed_recipients",
            postgresql.ARRAY(sa.Text()),
            server_default="{}",
            nullable=False,
        ),
    )
    op.add_column(
        "emails", sa.Column("bounced", sa.Boolean(), server_default="false", nullable=False)
    )
    op.add_column(
        "emails", sa.Column("complained", sa.Boolean(), server_default="false", nullable=False)
    )
    _checks(_NEW, "status IN ('sent', 'bounced')")

    op.create_table(
        "suppressions",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("project_id", sa.UUID(), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("email_id", sa.UUID(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "reason IN ('hard_bounce', 'complaint', 'manual', 'unsubscribe')",
            name=op.f("ck_suppressions_reason_known"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suppressions")),
    )
    op.create_index(
        "ix_suppressions_project_id_address", "suppressions", ["project_id", "address"], unique=True
    )
    op.create_index(
        "ix_suppressions_project_id_created_at_id",
        "suppressions",
        ["project_id", "created_at", "id"],
    )

    op.create_table(
        "delivery_feedback",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("email_id", sa.UUID(), nullable=True),
        sa.Column("project_id", sa.UUID(), nullable=True),
        sa.Column("recipient", sa.Text(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("bounce_type", sa.String(length=8), nullable=True),
        sa.Column("diagnostic_code", sa.Text(), nullable=True),
        sa.Column("status_code", sa.String(length=16), nullable=True),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("provider_event_id", sa.Text(), nullable=True),
        sa.Column("message_id", sa.Text(), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("parse_error", sa.Text(), nullable=True),
        sa.Column("raw", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "kind IN ('delivered', 'bounced', 'complained', 'unsubscribed', 'unknown')",
            name=op.f("ck_delivery_feedback_kind_known"),
        ),
        sa.CheckConstraint(
            "bounce_type IN ('hard', 'soft')", name=op.f("ck_delivery_feedback_bounce_type_known")
        ),
        sa.ForeignKeyConstraint(
            ["email_id"],
            ["emails.id"],
            name=op.f("fk_delivery_feedback_email_id_emails"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_feedback")),
        sa.UniqueConstraint(
            "provider",
            "provider_event_id",
            name=op.f("uq_delivery_feedback_provider_provider_event_id"),
        ),
    )
    op.create_index("ix_delivery_feedback_email_id", "delivery_feedback", ["email_id"])
    op.create_index(
        "ix_delivery_feedback_project_id_received_at",
        "delivery_feedback",
        ["project_id", "received_at"],
    )
    op.create_index(
        "ix_delivery_feedback_unmatched",
        "delivery_feedback",
        ["received_at"],
        postgresql_where=sa.text("email_id IS NULL"),
    )


def downgrade() -> None:
    op.drop_table("delivery_feedback")
    op.drop_table("suppressions")
    # Nothing is lost going back: a bounced email was sent, a suppressed one was never sent.
    op.execute("UPDATE emails SET status = 'sent' WHERE status = 'bounced'")
    op.execute(
        "UPDATE emails SET status = 'cancelled', cancelled_at = updated_at "
        "WHERE status = 'suppressed'"
    )
    _checks(_OLD, "status = 'sent'")
    op.drop_column("emails", "complained")
    op.drop_column("emails", "bounced")
    op.drop_column("emails", "suppressed_recipients")
