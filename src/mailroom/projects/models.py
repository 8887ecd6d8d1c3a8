"""The projects table."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, Text, func
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from mailroom.db.base import Base

# The id of the project named DEFAULT_PROJECT_NAME (see names), created by migration 0006
# (keep in step). Fixed, the same on every install, so that nothing has to look it up.
DEFAULT_PROJECT_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    # What keys, the CLI and `?project=` call it; never changes once created.
    name: Mapped[str] = mapped_column(Text, unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
