"""providers: each delivery attempt records the provider it went through

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 00:00:00

A nullable column with no default: PostgreSQL adds it without rewriting the table.
The index serves the log's ``?provider=`` filter (emails with an attempt there).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("delivery_attempts", sa.Column("provider", sa.String(length=63), nullable=True))
    op.create_index(
        "ix_delivery_attempts_provider_email_id",
        "delivery_attempts",
        ["provider", "email_id"],
        postgresql_where=sa.text("provider IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_delivery_attempts_provider_email_id", table_name="delivery_attempts")
    op.drop_column("delivery_attempts", "provider")
