"""signing_secrets and dashboard_signouts: the dashboard's session secret and ended sessions

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 20:30:00

Kept in the database so that every API process signs with the same secret, and a restart
does not end every dashboard session, without anyone having to set one. A session ended by
"Sign out" is remembered until it would have expired, so a copy of its cookie stops working.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "signing_secrets",
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("purpose", name=op.f("pk_signing_secrets")),
    )
    op.create_table(
        "dashboard_signouts",
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("session_id", name=op.f("pk_dashboard_signouts")),
    )


def downgrade() -> None:
    op.drop_table("dashboard_signouts")
    op.drop_table("signing_secrets")
