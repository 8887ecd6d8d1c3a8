"""webhooks: endpoints, the email events outbox, deliveries and their attempts

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 00:00:00

Every status change of an email writes an ``email_events`` row in the same transaction,
by statement triggers on ``emails`` (so no code path that moves an email can forget one):
an insert gives ``email.queued`` or ``email.scheduled``, an update that changes the
status gives ``email.<status>`` (``sending`` excepted: nobody outside needs it; and
``bounced``: each bounce report emits its own ``email.bounced``, see mailroom.emails.feedback). A
statement trigger on ``email_events`` fans each new event out to one ``webhook_deliveries``
row per enabled endpoint of its project subscribed to its type: the outbox the worker
sends from.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Keep in step with mailroom.webhooks.events (EMAIL_DATA): the payload's `data`.
_DATA = """
    jsonb_build_object(
        'emailId', n.id,
        'messageId', n.message_id,
        'to', to_jsonb(n.to_addrs),
        'subject', n.subject,
        'status', n.status,
        'attempt', n.attempts,
        'error', CASE
            WHEN n.status IN ('queued', 'scheduled', 'sent', 'cancelled') THEN NULL
            WHEN n.last_error_code IS NULL AND n.last_error_message IS NULL THEN NULL
            ELSE jsonb_build_object(
                'code', n.last_error_code,
                'enhancedCode', n.last_error_enhanced,
                'message', n.last_error_message)
        END,
        'nextAttemptAt', n.next_attempt_at,
        'sandbox', n.sandbox
    )
"""

_FUNCTIONS = [
    f"""
    CREATE FUNCTION mailroom_event_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO email_events (id, email_id, project_id, type, data, created_at)
        SELECT gen_random_uuid(), n.id, n.project_id, 'email.' || n.status, {_DATA},
               n.created_at
        FROM new_rows n
        WHERE n.status <> 'sending'
        ORDER BY n.created_at, n.id;
        RETURN NULL;
    END
    $$;
    """,
    f"""
    CREATE FUNCTION mailroom_event_updated() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO email_events (id, email_id, project_id, type, data, created_at)
        SELECT gen_random_uuid(), n.id, n.project_id, 'email.' || n.status, {_DATA}, now()
        FROM old_rows o JOIN new_rows n ON n.id = o.id
        WHERE o.status IS DISTINCT FROM n.status AND n.status NOT IN ('sending', 'bounced')
        ORDER BY n.id;
        RETURN NULL;
    END
    $$;
    """,
    """
    CREATE FUNCTION mailroom_event_fan_out() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO webhook_deliveries (id, event_id, endpoint_id, email_id, event_seq,
                                        status, next_attempt_at)
        SELECT gen_random_uuid(), e.id, w.id, e.email_id, e.seq, 'pending', now()
        FROM new_events e
        JOIN webhook_endpoints w
          ON w.project_id = e.project_id AND w.enabled AND e.type = ANY(w.events);
        RETURN NULL;
    END
    $$;
    """,
]

_TRIGGERS = [
    "CREATE TRIGGER emails_event_inserted AFTER INSERT ON emails "
    "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
    "EXECUTE FUNCTION mailroom_event_inserted()",
    "CREATE TRIGGER emails_event_updated AFTER UPDATE ON emails "
    "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT "
    "EXECUTE FUNCTION mailroom_event_updated()",
    "CREATE TRIGGER email_events_fan_out AFTER INSERT ON email_events "
    "REFERENCING NEW TABLE AS new_events FOR EACH STATEMENT "
    "EXECUTE FUNCTION mailroom_event_fan_out()",
]


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.UUID(), primary_key=True),
        sa.Column("project_id", sa.UUID(), sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("events", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("previous_secret", sa.Text(), nullable=True),
        sa.Column("previous_secret_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    op.create_index(
        "ix_webhook_endpoints_project_id_created_at",
        "webhook_endpoints",
        ["project_id", "created_at", "id"],
    )
    op.create_table(
        "email_events",
        sa.Column("id", sa.UUID(), primary_key=True),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), nullable=False, unique=True),
        sa.Column(
            "email_id", sa.UUID(), sa.ForeignKey("emails.id", ondelete="CASCADE"), nullable=True
        ),
        sa.Column("project_id", sa.UUID(), sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("data", postgresql.JSONB(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    op.create_index("ix_email_events_email_id_seq", "email_events", ["email_id", "seq"])
    op.create_index(
        "ix_email_events_project_id_created_at", "email_events", ["project_id", "created_at"]
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.UUID(), primary_key=True),
        sa.Column(
            "event_id",
            sa.UUID(),
            sa.ForeignKey("email_events.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "endpoint_id",
            sa.UUID(),
            sa.ForeignKey("webhook_endpoints.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("email_id", sa.UUID(), nullable=True),
        sa.Column("event_seq", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'succeeded', 'failed')", name="webhook_delivery_status_known"
        ),
    )
    op.create_index(
        "ix_webhook_deliveries_due",
        "webhook_deliveries",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_webhook_deliveries_order",
        "webhook_deliveries",
        ["endpoint_id", "email_id", "event_seq"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index("ix_webhook_deliveries_event_id", "webhook_deliveries", ["event_id"])
    op.create_table(
        "webhook_attempts",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), primary_key=True),
        sa.Column(
            "delivery_id",
            sa.UUID(),
            sa.ForeignKey("webhook_deliveries.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "endpoint_id",
            sa.UUID(),
            sa.ForeignKey("webhook_endpoints.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("event_id", sa.UUID(), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("response_code", sa.Integer(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'succeeded', 'failed')", name="webhook_attempt_status_known"
        ),
    )
    op.create_index(
        "ix_webhook_attempts_endpoint_id_created_at",
        "webhook_attempts",
        ["endpoint_id", "created_at", "id"],
    )
    op.create_index("ix_webhook_attempts_created_at", "webhook_attempts", ["created_at"])
    op.create_index("ix_webhook_attempts_delivery_id", "webhook_attempts", ["delivery_id"])
    for statement in [*_FUNCTIONS, *_TRIGGERS]:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS email_events_fan_out ON email_events")
    op.execute("DROP TRIGGER IF EXISTS emails_event_updated ON emails")
    op.execute("DROP TRIGGER IF EXISTS emails_event_inserted ON emails")
    for function in ("mailroom_event_fan_out", "mailroom_event_updated", "mailroom_event_inserted"):
        op.execute(f"DROP FUNCTION IF EXISTS {function}()")
    op.drop_table("webhook_attempts")
    op.drop_table("webhook_deliveries")
    op.drop_table("email_events")
    op.drop_table("webhook_endpoints")
