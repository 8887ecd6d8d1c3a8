"""The log tables: one row per email, its attachments, one append-only row per attempt."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mailroom.db.base import Base
from mailroom.emails.states import EmailStatus
from mailroom.projects.models import Project

_STATUSES = ", ".join(f"'{s.value}'" for s in EmailStatus)


class Email(Base):
    __tablename__ = "emails"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    sender: Mapped[str] = mapped_column(Text)
    to_addrs: Mapped[list[str]] = mapped_column(ARRAY(Text))
    cc_addrs: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    bcc_addrs: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    reply_to: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    # Every envelope recipient, lower-cased bare address: what the `to` filter searches.
    recipients: Mapped[list[str]] = mapped_column(ARRAY(Text))
    subject: Mapped[str] = mapped_column(Text)
    text_body: Mapped[str | None] = mapped_column(Text)
    html_body: Mapped[str | None] = mapped_column(Text)
    headers: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    message_id: Mapped[str] = mapped_column(Text, unique=True)
    request_id: Mapped[str | None] = mapped_column(String(200))
    # The batch job carrying the first attempt (POST /send/batch), for the sweeper.
    batch_job_id: Mapped[str | None] = mapped_column(String(100))
    api_key_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("api_keys.id", ondelete="SET NULL")
    )
    # The sending key's project, set once at acceptance: who may read and act on it. Every
    # query a caller makes on emails filters on it (see mailroom.projects.access).
    project_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey(Project.id))

    status: Mapped[str] = mapped_column(String(16), server_default=EmailStatus.QUEUED.value)
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    # Attempts made before the last manual retry: each retry gets MAX_ATTEMPTS afresh.
    attempts_before_retry: Mapped[int] = mapped_column(Integer, server_default="0")
    # Delivered through no SMTP server (a sandbox key or request), yet logged as usual.
    sandbox: Mapped[bool] = mapped_column(Boolean, server_default="false")
    # Rows in email_attachments: the worker loads them only for emails that have some.
    attachment_count: Mapped[int] = mapped_column(SmallInteger, server_default="0")
    # Recipients left out of the envelope because they were on the suppression list when
    # the email was accepted (normalized as mailroom.suppressions.addresses does).
    suppressed_recipients: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    # Set by provider feedback or a DSN/ARF report (see mailroom.feedback): a recipient
    # bounced (hard or soft), or complained. The log shows them without a join.
    bounced: Mapped[bool] = mapped_column(Boolean, server_default="false")
    complained: Mapped[bool] = mapped_column(Boolean, server_default="false")
    last_error_code: Mapped[int | None] = mapped_column(Integer)
    last_error_enhanced: Mapped[str | None] = mapped_column(String(16))
    last_error_message: Mapped[str | None] = mapped_column(Text)

    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    failed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When the caller asked it to go out (`sendAt`); null for "now".
    send_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Until when the worker that claimed it (status `sending`) owns it.
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The worker process (a row of `workers`) that claimed it; no foreign key, so that a
    # claim never waits on the registry row's locks and a vanished worker's row may go.
    worker_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    # Each envelope recipient's outcome ([{address, status, code, enhancedCode, message}]),
    # once an attempt resolved recipients separately; null while they share one fate.
    recipient_states: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)

    delivery_attempts: Mapped[list[DeliveryAttempt]] = relationship(
        back_populates="email", order_by="DeliveryAttempt.attempt_number", lazy="raise"
    )

    @classmethod
    def from_row(cls, row: Any) -> Email:
        """A detached Email from a row holding every column of the table (a Core RETURNING)."""
        return cls(**{c.key: row[c.name] for c in cast(Table, cls.__table__).c})

    __table_args__ = (
        CheckConstraint(f"status IN ({_STATUSES})", name="status_known"),
        # The timestamps cannot disagree with the status, whatever code writes them.
        # A bounced email was sent first: it keeps its sent_at.
        CheckConstraint(
            "(status IN ('sent', 'bounced')) = (sent_at IS NOT NULL)", name="sent_at_iff_sent"
        ),
        CheckConstraint(
            "(status = 'failed') = (failed_at IS NOT NULL)", name="failed_at_iff_failed"
        ),
        CheckConstraint(
            "(status = 'cancelled') = (cancelled_at IS NOT NULL)",
            name="cancelled_at_iff_cancelled",
        ),
        CheckConstraint("attempts >= 0", name="attempts_non_negative"),
        # Newest-first listing, keyset cursor and today's report (status is included
        # so the report counts from the index alone): one project's, and every project's
        # (an admin key's).
        Index(
            "ix_emails_project_id_created_at_id",
            "project_id",
            "created_at",
            "id",
            postgresql_include=["status"],
        ),
        Index(
            "ix_emails_created_at_id",
            "created_at",
            "id",
            postgresql_include=["status"],
        ),
        # The status filter and requeue (one project); every project's, and retention.
        Index(
            "ix_emails_project_id_status_created_at_id", "project_id", "status", "created_at", "id"
        ),
        Index("ix_emails_status_created_at_id", "status", "created_at", "id"),
        Index("ix_emails_recipients", "recipients", postgresql_using="gin"),
        # The dashboard's "sender/subject contains" filters (pg_trgm, migration 0012).
        *(
            Index(
                f"ix_emails_{column}_trgm",
                column,
                postgresql_using="gin",
                postgresql_ops={column: "gin_trgm_ops"},
            )
            for column in ("sender", "subject")
        ),
        # What the sweeper looks for: small partial indexes over unfinished emails only.
        Index(
            "ix_emails_dispatchable",
            "next_attempt_at",
            postgresql_where=text("status IN ('queued', 'retrying', 'scheduled')"),
        ),
        Index(
            "ix_emails_sending_lease",
            "lease_expires_at",
            postgresql_where=text("status = 'sending'"),
        ),
    )


class WorkerProcess(Base):
    """A running worker process, alive while its heartbeat is recent (see worker_registry)."""

    __tablename__ = "workers"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    host: Mapped[str] = mapped_column(Text)
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    heartbeat_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class EmailAttachment(Base):
    """One attached file, stored with its email so that every retry sends the same bytes."""

    __tablename__ = "email_attachments"

    email_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("emails.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    filename: Mapped[str] = mapped_column(Text)
    content_type: Mapped[str] = mapped_column(Text)
    # Set for an inline image, which the HTML body shows as <img src="cid:…">.
    content_id: Mapped[str | None] = mapped_column(Text)
    size: Mapped[int] = mapped_column(Integer)
    content: Mapped[bytes] = mapped_column(LargeBinary)


class DeliveryAttempt(Base):
    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    email_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("emails.id", ondelete="CASCADE")
    )
    attempt_number: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    outcome: Mapped[str] = mapped_column(String(16))
    smtp_code: Mapped[int | None] = mapped_column(Integer)
    enhanced_code: Mapped[str | None] = mapped_column(String(16))
    message: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer)
    # Recipients refused while others were accepted: [{recipient, code, enhancedCode, message}].
    refused_recipients: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    # The SMTP_PROVIDERS name (or SMTP_HOST) the attempt went through.
    provider: Mapped[str | None] = mapped_column(String(63))

    email: Mapped[Email] = relationship(back_populates="delivery_attempts", lazy="raise")

    __table_args__ = (
        UniqueConstraint("email_id", "attempt_number"),
        Index(
            "ix_delivery_attempts_provider_email_id",
            "provider",
            "email_id",
            postgresql_where=text("provider IS NOT NULL"),
        ),
        CheckConstraint(
            "outcome IN ('accepted', 'transient', 'permanent', 'unknown', 'interrupted')",
            name="outcome_known",
        ),
    )


class IdempotencyKey(Base):
    """The first response to an Idempotency-Key, per API key, replayed for 24 hours."""

    __tablename__ = "idempotency_keys"

    api_key_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    # Set, with the response, in the transaction that reserved the key.
    email_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("emails.id", ondelete="CASCADE")
    )
    response: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_idempotency_keys_created_at", "created_at"),
        # Deleting an email cascades here (retention): without it, a scan per email.
        Index("ix_idempotency_keys_email_id", "email_id"),
    )


class EmailCount(Base):
    """How many emails of a project created in a 15-minute bucket are in each status.

    Kept by the triggers of migrations 0003 and 0006: they append to ``email_count_deltas`` in
    the statement that inserts, moves or deletes emails, and ``mailroom_fold_counts()``
    folds those into this table every second. The daily report and
    ``pagination.total`` sum a few hundred rows instead of counting today's emails, and
    any time zone's day is a whole number of buckets. ``created`` is never lowered by
    a purge (a purged day still reports what happened); ``purged`` says how many
    rows are gone.
    """

    __tablename__ = "email_counts"

    # A project's report reads its own rows (the primary key's prefix); an admin's, every
    # project's rows of the day (the bucket index).
    project_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    bucket: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    created: Mapped[int] = mapped_column(BigInteger, server_default="0")
    purged: Mapped[int] = mapped_column(BigInteger, server_default="0")

    __table_args__ = (Index("ix_email_counts_bucket", "bucket"),)


class EmailStatusTotal(Base):
    """A project's emails present in each status, all time (folded from the same deltas)."""

    __tablename__ = "email_status_totals"

    project_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    present: Mapped[int] = mapped_column(BigInteger, server_default="0")


class EmailCountDelta(Base):
    """Changes to the two tables above not folded in yet (append-only, lock-free)."""

    __tablename__ = "email_count_deltas"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    project_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    bucket: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16))
    created: Mapped[int] = mapped_column(BigInteger)
    purged: Mapped[int] = mapped_column(BigInteger)
    present: Mapped[int] = mapped_column(BigInteger)


class ProviderCount(Base):
    """Delivery attempts of a project through a provider ending in a 15-minute bucket,
    per outcome: the providers page's counts of today (see migration 0012).

    Kept like EmailCount: a statement trigger on ``delivery_attempts`` appends to
    ``provider_count_deltas``, and ``mailroom_fold_provider_counts()`` folds them in.
    """

    __tablename__ = "provider_counts"

    project_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    bucket: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    provider: Mapped[str] = mapped_column(String(63), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(16), primary_key=True)
    attempts: Mapped[int] = mapped_column(BigInteger, server_default="0")

    __table_args__ = (Index("ix_provider_counts_bucket", "bucket"),)


class ProviderCountDelta(Base):
    """Attempts not folded into ProviderCount yet (append-only, lock-free)."""

    __tablename__ = "provider_count_deltas"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    project_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    bucket: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    provider: Mapped[str] = mapped_column(String(63))
    outcome: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(BigInteger)


class DeliveryFeedback(Base):
    """What a provider's webhook or a DSN/ARF report said about one recipient of an email.

    Kept whether or not it matched an email (``email_id`` null: unmatched, listed by
    GET /feedback/unmatched with why). A provider's own event id makes a redelivered
    webhook a no-op.
    """

    __tablename__ = "delivery_feedback"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    email_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("emails.id", ondelete="CASCADE")
    )
    project_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    recipient: Mapped[str | None] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(16))
    bounce_type: Mapped[str | None] = mapped_column(String(8))
    # The remote server's diagnostic ("smtp; 550 5.1.1 user unknown") and RFC 3463 status.
    diagnostic_code: Mapped[str | None] = mapped_column(Text)
    status_code: Mapped[str | None] = mapped_column(String(16))
    provider: Mapped[str] = mapped_column(String(16))
    provider_event_id: Mapped[str | None] = mapped_column(Text)
    # The Message-ID the report named, kept to explain (and later match) an unmatched one.
    message_id: Mapped[str | None] = mapped_column(Text)
    occurred_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Why it matched no email, or could not be read at all.
    parse_error: Mapped[str | None] = mapped_column(Text)
    # An unreadable or unmatched report as received (at most 64 KiB), to look at later.
    raw: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        CheckConstraint(
            "kind IN ('delivered', 'bounced', 'complained', 'unsubscribed', 'unknown')",
            name="kind_known",
        ),
        CheckConstraint("bounce_type IN ('hard', 'soft')", name="bounce_type_known"),
        UniqueConstraint("provider", "provider_event_id"),
        Index("ix_delivery_feedback_email_id", "email_id"),
        # Today's complaint count, per project; the unmatched list.
        Index("ix_delivery_feedback_project_id_received_at", "project_id", "received_at"),
        Index(
            "ix_delivery_feedback_unmatched",
            "received_at",
            postgresql_where=text("email_id IS NULL"),
        ),
    )
