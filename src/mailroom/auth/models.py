from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, String, Text, func, text
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.orm import Mapped, mapped_column

from mailroom.db.base import Base
from mailroom.projects.models import Project


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    # The project whose emails the key sends and (without the admin scope) only reaches.
    project_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey(Project.id))
    # The first characters of the key, shown in listings so a key can be recognised.
    prefix: Mapped[str] = mapped_column(String(16))
    # SHA-256 of the whole key. Keys carry 256 random bits, so a fast hash is enough;
    # the key itself is shown once and never stored.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(ARRAY(Text))
    rate_limit: Mapped[str | None] = mapped_column(Text)
    # Emails sent with this key are logged but never handed to an SMTP server.
    sandbox: Mapped[bool] = mapped_column(Boolean, server_default="false")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        # A name identifies one live key; revoked keys keep theirs for the record.
        Index(
            "uq_api_keys_active_name",
            "name",
            unique=True,
            postgresql_where=text("revoked_at IS NULL"),
        ),
    )


class SigningSecret(Base):
    """A random secret the service signs with, by purpose ("dashboard": its session
    cookies), made once and shared by every process, so what one process signed another
    accepts, before and after a restart."""

    __tablename__ = "signing_secrets"

    purpose: Mapped[str] = mapped_column(String(32), primary_key=True)
    secret: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class DashboardSignout(Base):
    """A dashboard session ended by "Sign out": its cookie, or any copy of it, no longer
    opens a page. Kept until the session would have expired anyway (``expires_at``)."""

    __tablename__ = "dashboard_signouts"

    session_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
