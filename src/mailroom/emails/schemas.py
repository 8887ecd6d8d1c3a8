"""What the API accepts and returns for emails. Validation rules live here, one per field."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from mailroom.addresses import header_safe, parse_mailbox
from mailroom.emails.attachments import (
    MAX_ATTACHMENTS,
    check_content_id,
    content_type_for,
    decode_content,
    encode_content,
    safe_filename,
)
from mailroom.emails.instants import in_utc, iso_8601_only
from mailroom.emails.states import EmailStatus

MAX_RECIPIENTS = 50
MAX_SCHEDULE_DAYS = 30
MAX_REQUEUE = 10_000  # per request; requeued in transactions of REQUEUE_BATCH
REQUEUE_BATCH = 500
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


def _filename(value: str) -> str:
    return safe_filename(value)


Base64Content = Annotated[
    bytes,
    BeforeValidator(decode_content),
    PlainSerializer(encode_content, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "type": "string",
            "contentEncoding": "base64",
            "description": "The file's bytes, base64-encoded (standard alphabet, padded)",
            "examples": ["JVBERi0xLjQK"],
        }
    ),
]


class AttachmentIn(_Schema):
    """A file to attach; with `contentId`, an inline image the HTML shows as cid:…"""

    model_config = ConfigDict(extra="forbid")

    filename: Annotated[str, AfterValidator(_filename)] = Field(
        min_length=1,
        max_length=1000,
        description="Shown to the recipient; directories and control characters are removed",
        examples=["invoice-1234.pdf"],
    )
    content: Base64Content
    content_type: str | None = Field(
        default=None,
        validate_default=True,
        description="MIME type; guessed from the file name if left out",
        examples=["application/pdf"],
    )
    content_id: str | None = Field(
        default=None,
        description='For an inline image: the id the HTML refers to as <img src="cid:…">',
        examples=["logo"],
    )

    @field_validator("content_id")
    @classmethod
    def _content_id(cls, value: str | None) -> str | None:
        return None if value is None else check_content_id(value)

    @field_validator("content_type")
    @classmethod
    def _type(cls, value: str | None, info: ValidationInfo) -> str | None:
        filename = info.data.get("filename")
        if filename is None:  # the file name is invalid: that error is reported instead
            return value
        return content_type_for(filename, value)


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
    attachments: list[AttachmentIn] = Field(
        default_factory=list,
        max_length=MAX_ATTACHMENTS,
        description=f"Up to {MAX_ATTACHMENTS} files; MAX_ATTACHMENTS_BYTES in all (10 MiB by "
        "default, after decoding)",
    )
    send_at: datetime | None = Field(
        default=None,
        description="Send later: an ISO 8601 time with its offset, in the future and at "
        f"most {MAX_SCHEDULE_DAYS} days ahead. The email is `scheduled` until then.",
        examples=["2026-12-01T09:00:00+01:00"],
    )

    @field_validator("subject")
    @classmethod
    def _subject(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return header_safe(value)

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
                header_safe(header_value)
            except ValueError as exc:
                raise ValueError(f"header {name!r} {exc}") from None
        return value

    _send_at_is_iso_8601 = field_validator("send_at", mode="before")(iso_8601_only)

    @field_validator("send_at")
    @classmethod
    def _send_at(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                "needs an offset or Z (e.g. 2026-12-01T09:00:00+01:00): "
                "a bare local time is ambiguous"
            )
        value = in_utc(value)
        now = datetime.now(UTC)
        if value <= now:
            raise ValueError("must be in the future (leave it out to send now)")
        if value > now + timedelta(days=MAX_SCHEDULE_DAYS):
            raise ValueError(f"must be at most {MAX_SCHEDULE_DAYS} days ahead")
        return value

    @model_validator(mode="after")
    def _whole(self) -> SendEmailRequest:
        if self.text is None and self.html is None:
            raise ValueError("give a body: 'text', 'html' or both")
        ids = [a.content_id for a in self.attachments if a.content_id is not None]
        if len(ids) != len(set(ids)):
            raise ValueError("each attachment's contentId must be different")
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


ErrorClass = Literal["4xx", "5xx", "connection"]


class RequeueRequest(_Schema):
    """Which failed emails to send again; the same filters as GET /logs/email."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"since": "2026-11-27T00:00:00Z", "errorClass": "4xx", "dryRun": True},
            ]
        },
    )

    status: Literal["failed"] = Field(
        default="failed", description="Only failed emails can be requeued"
    )
    since: datetime | None = Field(default=None, description="Created at or after (ISO 8601)")
    until: datetime | None = Field(default=None, description="Created before (ISO 8601)")
    to: str | None = Field(default=None, description="Only emails with this recipient")
    error_class: ErrorClass | None = Field(
        default=None,
        description="The last error: an SMTP 4xx or 5xx reply, or a connection fault",
    )
    dry_run: bool = Field(default=False, description="Count them, change nothing")
    limit: int = Field(
        default=MAX_REQUEUE, ge=1, le=MAX_REQUEUE, description="Requeue at most this many"
    )

    _times_are_iso_8601 = field_validator("since", "until", mode="before")(iso_8601_only)

    @field_validator("since", "until")
    @classmethod
    def _instant(cls, value: datetime | None) -> datetime | None:
        # Without an offset: UTC, as GET /logs/email reads it with its default tz.
        return None if value is None else in_utc(value)

    @field_validator("to")
    @classmethod
    def _to(cls, value: str | None) -> str | None:
        return None if value is None else parse_mailbox(value).address.lower()

    @model_validator(mode="after")
    def _range(self) -> RequeueRequest:
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError("until must be later than since")
        return self


class RequeueResult(_Schema):
    dry_run: bool
    matched: int = Field(description="Failed emails the filters select")
    requeued: int = Field(description="Put back in the queue by this request (0 on a dry run)")
    has_more: bool = Field(description="More matched than `limit`: call again for the rest")


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
    cancelled_at: datetime | None
    send_at: datetime | None = Field(description="When it was asked to go out, if scheduled")
    next_attempt_at: datetime | None
    sandbox: bool = Field(description="Logged as sent, but never handed to an SMTP server")
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


class AttachmentInfo(_Schema):
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
    cancelled: int
    pending: int = Field(
        description="Not finished yet (scheduled, queued, sending or retrying): "
        "total - sent - failed - cancelled"
    )


class EmailLogPage(_Schema):
    data: list[EmailLogItem]
    pagination: Pagination
    summary: DailySummary
