"""The suppressions table: one row per address per list."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, CheckConstraint, DateTime, Identity, Index, Text, func
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from mailroom.db.base import Base

# The list every project shares under SUPPRESSION_SCOPE=global: its rows carry this in
# project_id (no project has it). A fixed id keeps the unique index and the lookups the
# same in both scopes.
GLOBAL_LIST_ID = uuid.UUID(int=0)


class Reason(StrEnum):
    HARD_BOUNCE = "hard_bounce"
    COMPLAINT = "complaint"
    MANUAL = "manual"
    UNSUBSCRIBE = "unsubscribe"


_REASONS = ", ".join(f"'{r.value}'" for r in Reason)


class Suppression(Base):
    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    # The project whose list it is on, or GLOBAL_LIST_ID.
    project_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    # Normalized (see addresses): what sending matches on.
    address: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    # The email whose bounce or complaint put it here (no foreign key: the email may be
    # purged long before the suppression ends, and the id still says what happened).
    email_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # Past this instant it no longer suppresses (and is not listed).
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint(f"reason IN ({_REASONS})", name="reason_known"),
        # The send path's one lookup, and uniqueness: (list, address).
        Index("ix_suppressions_project_id_address", "project_id", "address", unique=True),
        # Newest-first listing with a keyset cursor.
        Index("ix_suppressions_project_id_created_at_id", "project_id", "created_at", "id"),
        # The list's search (pg_trgm, migration 0012; see db.text_search).
        Index(
            "ix_suppressions_address_trgm",
            "address",
            postgresql_using="gin",
            postgresql_ops={"address": "gin_trgm_ops"},
        ),
    )
