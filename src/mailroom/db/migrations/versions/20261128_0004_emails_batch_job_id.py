"""emails.batch_job_id: the batch job that carries an email's first attempt

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 00:30:00

The sweeper asks Redis whether an overdue email's job is still there; for an email
of a batch that job is the batch's, whose id it could not otherwise know.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("emails", sa.Column("batch_job_id", sa.String(length=100), nullable=True))


def downgrade() -> None:
    op.drop_column("emails", "batch_job_id")
