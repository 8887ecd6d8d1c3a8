"""webhook dispatch indexes: the deliveries never handed over apart from those handed over

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05 00:00:00

The dispatcher pass reads the due deliveries not handed to BullMQ, and those handed over
more than a lease ago (lost). One index over every pending delivery made each pass walk
past all the deliveries already handed over and waiting in BullMQ, tens of thousands under
a backlog, several times a second. Each read now has a partial index of its own.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_webhook_deliveries_due", table_name="webhook_deliveries")
    op.create_index(
        "ix_webhook_deliveries_due",
        "webhook_deliveries",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'pending' AND dispatched_at IS NULL"),
    )
    op.create_index(
        "ix_webhook_deliveries_handed_over",
        "webhook_deliveries",
        ["dispatched_at"],
        postgresql_where=sa.text("status = 'pending' AND dispatched_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_handed_over", table_name="webhook_deliveries")
    op.drop_index("ix_webhook_deliveries_due", table_name="webhook_deliveries")
    op.create_index(
        "ix_webhook_deliveries_due",
        "webhook_deliveries",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )
