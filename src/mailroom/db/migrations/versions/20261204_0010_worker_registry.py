"""worker registry and per-recipient outcomes

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 00:00:00

Each worker process keeps a row in ``workers`` whose ``heartbeat_at`` it renews every
few seconds, and a claimed email records the claiming process in ``emails.worker_id``.
A claim may take over a ``sending`` email whose worker's heartbeat went stale, so a
killed worker's emails go out again within seconds rather than after SENDING_LEASE.
``emails.recipient_states`` keeps each recipient's outcome once an attempt resolved them
separately (a server accepted some and deferred others), so that only the deferred ones
are retried. The new columns are nullable without a default: adding them rewrites nothing.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("host", sa.Text(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column(
            "started_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "heartbeat_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
    )
    op.add_column("emails", sa.Column("worker_id", postgresql.UUID(as_uuid=True), nullable=True))
    op.add_column(
        "emails",
        sa.Column("recipient_states", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("emails", "recipient_states")
    op.drop_column("emails", "worker_id")
    op.drop_table("workers")
