"""The webhook tables: endpoints, the events outbox, deliveries and their attempts."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from mailroom.db.base import Base
from mailroom.projects.models import Project

DELIVERY_STATUSES = ("pending", "succeeded", "failed")
_STATUSES = ", ".join(f"'{s}'" for s in DELIVERY_STATUSES)


class WebhookEndpoint(Base):
    __tablename__ = "webhook_endpoints"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    project_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey(Project.id))
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[list[str]] = mapped_column(ARRAY(Text))
    description: Mapped[str | None] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(Text)
    # After a rotation, requests are signed by this one too until it expires.
    previous_secret: Mapped[str | None] = mapped_column(Text)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The first failed attempt since the last success: what WEBHOOK_DISABLE_AFTER measures.
    failing_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        Index("ix_webhook_endpoints_project_id_created_at", "project_id", "created_at", "id"),
    )


class EmailEvent(Base):
    """One thing that happened to an email (or a test event): the `webhook-id` is ``id``."""

    __tablename__ = "email_events"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    # The order events happened in (ids are random).
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), unique=True)
    email_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("emails.id", ondelete="CASCADE")
    )
    project_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey(Project.id))
    type: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        Index("ix_email_events_email_id_seq", "email_id", "seq"),
        Index("ix_email_events_project_id_created_at", "project_id", "created_at"),
    )


class WebhookDelivery(Base):
    """One event to one endpoint: the outbox row the worker claims, sends and moves on."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey(EmailEvent.id, ondelete="CASCADE")
    )
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey(WebhookEndpoint.id, ondelete="CASCADE")
    )
    # Copied from the event: one email's deliveries to one endpoint go out in order.
    email_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    event_seq: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When it was last handed to BullMQ; one not sent long after is handed over again.
    dispatched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        CheckConstraint(f"status IN ({_STATUSES})", name="webhook_delivery_status_known"),
        # The dispatcher's two reads (migration 0014): what was never handed to BullMQ (or
        # was given back), in the order it fell due; and what was handed over long ago.
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending' AND dispatched_at IS NULL"),
        ),
        Index(
            "ix_webhook_deliveries_handed_over",
            "dispatched_at",
            postgresql_where=text("status = 'pending' AND dispatched_at IS NOT NULL"),
        ),
        Index(
            "ix_webhook_deliveries_order",
            "endpoint_id",
            "email_id",
            "event_seq",
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_webhook_deliveries_event_id", "event_id"),
    )


class WebhookAttempt(Base):
    """One request to a receiver, append-only: the deliveries log."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    delivery_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey(WebhookDelivery.id, ondelete="CASCADE")
    )
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey(WebhookEndpoint.id, ondelete="CASCADE")
    )
    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    event_type: Mapped[str] = mapped_column(String(64))
    attempt: Mapped[int] = mapped_column(Integer)
    # succeeded, failed (no attempt follows), pending (failed; another at next_attempt_at)
    status: Mapped[str] = mapped_column(String(16))
    response_code: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[int] = mapped_column(Integer)
    response_body: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint(f"status IN ({_STATUSES})", name="webhook_attempt_status_known"),
        Index("ix_webhook_attempts_endpoint_id_created_at", "endpoint_id", "created_at", "id"),
        Index("ix_webhook_attempts_created_at", "created_at"),
        Index("ix_webhook_attempts_delivery_id", "delivery_id"),
    )
