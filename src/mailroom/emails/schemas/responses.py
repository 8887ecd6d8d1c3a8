"""What the API returns for emails: acceptances, the log's items and pages, requeue results."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from mailroom.emails.schemas import CamelSchema
from mailroom.emails.states import EmailStatus


class SendAccepted(CamelSchema):
    id: uuid.UUID
    status: EmailStatus
    message_id: str
    created_at: datetime
    suppressed: list[str] = Field(
        default_factory=list,
        description="Recipients on the suppression list, left out of the envelope; all of "
        "them: the email is stored `suppressed` and never sent",
    )


class FieldError(CamelSchema):
    field: str
    message: str


class BatchItemError(CamelSchema):
    code: str
    message: str
    details: list[FieldError] = Field(description="The first 20 problems")
    details_total: int | None = Field(
        default=None, description="How many problems there were, when over 20"
    )


class BatchItemResult(CamelSchema):
    """The answer for ``emails[index]``: queued (with its id) or rejected (with why)."""

    index: int
    id: uuid.UUID | None = None
    status: EmailStatus | None = None
    message_id: str | None = None
    created_at: datetime | None = None
    suppressed: list[str] | None = Field(default=None, description="As POST /send's")
    error: BatchItemError | None = None


class SendBatchAccepted(CamelSchema):
    accepted: int = Field(description="Emails stored and queued")
    rejected: int = Field(description="Emails refused; each item's `error` says why")
    data: list[BatchItemResult] = Field(description="One result per email, in request order")


class RequeueResult(CamelSchema):
    dry_run: bool
    matched: int = Field(description="Failed emails the filters select")
    requeued: int = Field(description="Put back in the queue by this request (0 on a dry run)")
    has_more: bool = Field(description="More matched than `limit`: call again for the rest")


class EmailError(CamelSchema):
    code: int | None = Field(description="SMTP reply code, or null for a connection fault")
    enhanced_code: str | None = Field(description="RFC 3463 enhanced status code, e.g. 5.1.1")
    message: str | None


class EmailLogItem(CamelSchema):
    id: uuid.UUID
    project: str = Field(description="The project the email belongs to: its sending key's")
    sender: str = Field(alias="from")
    to: list[str]
    cc: list[str]
    bcc: list[str]
    subject: str
    status: EmailStatus
    attempts: int
    message_id: str
    created_at: datetime
    sent_at: datetime | None
    failed_at: datetime | None
    cancelled_at: datetime | None
    send_at: datetime | None = Field(description="When it was asked to go out, if scheduled")
    next_attempt_at: datetime | None
    sandbox: bool = Field(description="Logged as sent, but never handed to an SMTP server")
    error: EmailError | None
    bounced: bool = Field(
        default=False, description="A recipient bounced (reported after `sent`; see `feedback`)"
    )
    complained: bool = Field(default=False, description="A recipient reported it as spam")
    suppressed: list[str] = Field(
        default_factory=list, description="Recipients left out: on the suppression list"
    )


class DeliveryAttemptItem(CamelSchema):
    number: int
    started_at: datetime
    finished_at: datetime
    outcome: str
    code: int | None
    enhanced_code: str | None
    message: str | None
    duration_ms: int
    refused_recipients: list[dict[str, Any]] | None
    provider: str | None = Field(
        default=None, description="The provider (SMTP_PROVIDERS name, or SMTP_HOST) it went through"
    )


class FeedbackItem(CamelSchema):
    """What a provider's webhook or a DSN/ARF report said about one recipient."""

    recipient: str | None
    kind: str = Field(description="delivered, bounced, complained or unsubscribed")
    bounce_type: str | None = Field(description="hard or soft, for a bounce")
    diagnostic_code: str | None = Field(description="The remote server's words")
    status_code: str | None = Field(description="RFC 3463 status, e.g. 5.1.1")
    provider: str = Field(description="postmark, brevo, mailgun, ses or dsn")
    occurred_at: datetime | None
    received_at: datetime


class AttachmentInfo(CamelSchema):
    """An attachment as the log shows it: its name and size, never its content."""

    filename: str
    content_type: str
    content_id: str | None
    size: int = Field(description="Bytes, after decoding")


class EmailEventItem(CamelSchema):
    """An event of the email, as its webhooks carried it (`id` is their `webhook-id`)."""

    id: uuid.UUID
    type: str = Field(examples=["email.sent"])
    timestamp: datetime
    data: dict[str, Any]


class RecipientState(CamelSchema):
    """One envelope recipient's outcome (To, Cc and Bcc alike)."""

    address: str
    status: Literal["sent", "deferred", "failed", "pending"] = Field(
        description="sent: accepted by the server; deferred: refused for now (4xx), retried on "
        "its own; failed: refused for good, or still deferred when the attempts ran out; "
        "pending: no answer for it yet"
    )
    code: int | None = Field(description="The SMTP reply that decided it, if any")
    enhanced_code: str | None
    message: str | None


class EmailDetail(EmailLogItem):
    recipients: list[RecipientState] = Field(
        description="Each envelope recipient's state. An email whose server accepted some "
        "recipients and deferred others stays `retrying` until the deferred ones resolve "
        "(only they are sent again), then is `sent`."
    )
    reply_to: list[str]
    text: str | None
    html: str | None
    headers: dict[str, str]
    request_id: str | None
    attachments: list[AttachmentInfo]
    delivery_attempts: list[DeliveryAttemptItem]
    feedback: list[FeedbackItem] = Field(
        default_factory=list, description="Per-recipient outcomes reported after sending"
    )
    events: list[EmailEventItem] = Field(
        description="What happened to it, in order: the events its webhooks carry"
    )


class Pagination(CamelSchema):
    page: int | None = Field(description="The page number, or null when paging by cursor")
    limit: int
    total: int
    total_pages: int
    has_more: bool
    next_cursor: str | None


class DailySummary(CamelSchema):
    date: str = Field(description="Today's date in `timezone`, YYYY-MM-DD")
    timezone: str
    total: int
    sent: int
    failed: int = Field(
        description="Not delivered: failed at sending, plus `bounced` (sent, then every "
        "recipient hard-bounced)"
    )
    cancelled: int
    bounced: int = Field(description="Sent, then every recipient hard-bounced (in `failed`)")
    complained: int = Field(description="Emails a recipient reported as spam today")
    suppressed: int = Field(description="Never sent: every recipient on the suppression list")
    pending: int = Field(
        description="Not finished yet (scheduled, queued, sending or retrying): "
        "total - sent - failed - cancelled - suppressed"
    )


class EmailLogPage(CamelSchema):
    data: list[EmailLogItem]
    pagination: Pagination
    summary: DailySummary
