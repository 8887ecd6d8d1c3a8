"""What the API accepts and returns for emails. Validation rules live here, one per field."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from mailroom.emails.addresses import parse_mailbox, reject_control_characters
from mailroom.emails.states import EmailStatus

MAX_RECIPIENTS = 50
MAX_SUBJECT_LENGTH = 998  # RFC 5322's line limit
MAX_HEADERS = 50
MAX_HEADER_NAME_LENGTH = 76
MAX_HEADER_VALUE_LENGTH = 998
# Headers Mailroom writes itself; a caller setting them could forge or break the message.
RESERVED_HEADERS = frozenset(
    {
        "from",
        "sender",
        "to",
        "cc",
        "bcc",
        "reply-to",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "return-path",
        "received",
    }
)
_HEADER_NAME_CHARS = frozenset(chr(c) for c in range(33, 127)) - {":"}


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _mailbox(value: str) -> str:
    return parse_mailbox(value).header


Addr = Annotated[str, AfterValidator(_mailbox)]
AddrList = Annotated[list[Addr], BeforeValidator(_one_or_many)]


class _Schema(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class SendEmailRequest(_Schema):
    """An email to queue. ``to``, ``cc``, ``bcc`` and ``replyTo`` take one address or a list."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "to": "Jane Doe <jane@example.com>",
                    "from": "Acme <no-reply@acme.example.com>",
                    "subject": "Your receipt",
                    "text": "Thanks for your order.",
                    "html": "<p>Thanks for your order.</p>",
                    "headers": {"X-Campaign": "receipts"},
                }
            ]
        },
    )

    to: AddrList = Field(min_length=1, description="Recipient address, or a list of them")
    cc: AddrList = Field(default_factory=list)
    bcc: AddrList = Field(default_factory=list)
    sender: Addr | None = Field(default=None, alias="from", description="Defaults to MAIL_FROM")
    reply_to: AddrList = Field(default_factory=list)
    subject: str = Field(min_length=1, max_length=MAX_SUBJECT_LENGTH)
    text: str | None = Field(default=None, min_length=1, description="Plain-text body")
    html: str | None = Field(default=None, min_length=1, description="HTML body")
    headers: dict[str, str] = Field(
        default_factory=dict,
        max_length=MAX_HEADERS,
        description="Extra headers, e.g. X-Campaign or List-Unsubscribe",
    )

    @field_validator("subject")
    @classmethod
    def _subject(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return reject_control_characters(value)

    @field_validator("text", "html")
    @classmethod
    def _body(cls, value: str | None) -> str | None:
        if value is not None and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        seen: set[str] = set()
        for name, header_value in value.items():
            if not name or len(name) > MAX_HEADER_NAME_LENGTH:
                raise ValueError(
                    f"header name {name[:80]!r} must be 1 to {MAX_HEADER_NAME_LENGTH} characters"
                )
            if not set(name) <= _HEADER_NAME_CHARS:
                raise ValueError(
                    f"header name {name[:80]!r} may only contain printable ASCII without ':'"
                )
            lowered = name.lower()
            if lowered in RESERVED_HEADERS or lowered.startswith("content-"):
                raise ValueError(f"header {name!r} is set by Mailroom and cannot be given")
            if lowered in seen:
                raise ValueError(f"header {name!r} is given more than once")
            seen.add(lowered)
            if len(header_value) > MAX_HEADER_VALUE_LENGTH:
                raise ValueError(
                    f"header {name!r} is longer than {MAX_HEADER_VALUE_LENGTH} characters"
                )
            try:
                reject_control_characters(header_value)
            except ValueError as exc:
                raise ValueError(f"header {name!r} {exc}") from None
        return value

    @model_validator(mode="after")
    def _whole(self) -> SendEmailRequest:
        if self.text is None and self.html is None:
            raise ValueError("give a body: 'text', 'html' or both")
        count = len(self.to) + len(self.cc) + len(self.bcc)
        if count > MAX_RECIPIENTS:
            raise ValueError(
                f"at most {MAX_RECIPIENTS} recipients in to, cc and bcc together ({count} given)"
            )
        return self


class SendAccepted(_Schema):
    id: uuid.UUID
    status: EmailStatus
    message_id: str
    created_at: datetime


MAX_BATCH = 500

# Items are validated one by one by the service, so that one bad email does not
# reject the other 499; the OpenAPI document still describes each as a SendEmailRequest.
_BatchItem = Annotated[Any, WithJsonSchema({"$ref": "#/components/schemas/SendEmailRequest"})]


class SendBatchRequest(_Schema):
    """Up to 500 emails, each validated, stored and answered on its own."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "emails": [
                        {"to": "jane@example.com", "subject": "Receipt 1", "text": "Thanks!"},
                        {"to": "john@example.com", "subject": "Receipt 2", "text": "Thanks!"},
                    ]
                }
            ]
        },
    )

    emails: list[_BatchItem] = Field(
        min_length=1, max_length=MAX_BATCH, description=f"1 to {MAX_BATCH} emails"
    )


class FieldError(_Schema):
    field: str
    message: str


class BatchItemError(_Schema):
    code: str
    message: str
    details: list[FieldError]


class BatchItemResult(_Schema):
    """The answer for ``emails[index]``: queued (with its id) or rejected (with why)."""

    index: int
    id: uuid.UUID | None = None
    status: EmailStatus | None = None
    message_id: str | None = None
    created_at: datetime | None = None
    error: BatchItemError | None = None


class SendBatchAccepted(_Schema):
    accepted: int = Field(description="Emails stored and queued")
    rejected: int = Field(description="Emails refused; each item's `error` says why")
    data: list[BatchItemResult] = Field(description="One result per email, in request order")


class EmailError(_Schema):
    code: int | None = Field(description="SMTP reply code, or null for a connection fault")
    enhanced_code: str | None = Field(description="RFC 3463 enhanced status code, e.g. 5.1.1")
    message: str | None


class EmailLogItem(_Schema):
    id: uuid.UUID
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
    next_attempt_at: datetime | None
    error: EmailError | None


class DeliveryAttemptItem(_Schema):
    number: int
    started_at: datetime
    finished_at: datetime
    outcome: str
    code: int | None
    enhanced_code: str | None
    message: str | None
    duration_ms: int
    refused_recipients: list[dict[str, Any]] | None


class EmailDetail(EmailLogItem):
    reply_to: list[str]
    text: str | None
    html: str | None
    headers: dict[str, str]
    request_id: str | None
    delivery_attempts: list[DeliveryAttemptItem]


class Pagination(_Schema):
    page: int | None = Field(description="The page number, or null when paging by cursor")
    limit: int
    total: int
    total_pages: int
    has_more: bool
    next_cursor: str | None


class DailySummary(_Schema):
    date: str = Field(description="Today's date in `timezone`, YYYY-MM-DD")
    timezone: str
    total: int
    sent: int
    failed: int
    pending: int = Field(description="Neither sent nor failed yet: total - sent - failed")


class EmailLogPage(_Schema):
    data: list[EmailLogItem]
    pagination: Pagination
    summary: DailySummary
