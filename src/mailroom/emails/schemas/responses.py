"""What the API returns for emails: acceptances, the log's items and pages, requeue results."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import Field

from mailroom.emails.schemas import CamelSchema
from mailroom.emails.states import EmailStatus


class SendAccepted(CamelSchema):
    id: uuid.UUID
    status: EmailStatus
    message_id: str
    created_at: datetime


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


class AttachmentInfo(CamelSchema):
    """An attachment as the log shows it: its name and size, never its content."""

    filename: str
    content_type: str
    content_id: str | None
    size: int = Field(description="Bytes, after decoding")


class EmailDetail(EmailLogItem):
    reply_to: list[str]
    text: str | None
    html: str | None
    headers: dict[str, str]
    request_id: str | None
    attachments: list[AttachmentInfo]
    delivery_attempts: list[DeliveryAttemptItem]


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
    failed: int
    cancelled: int
    pending: int = Field(
        description="Not finished yet (scheduled, queued, sending or retrying): "
        "total - sent - failed - cancelled"
    )


class EmailLogPage(CamelSchema):
    data: list[EmailLogItem]
    pagination: Pagination
    summary: DailySummary
