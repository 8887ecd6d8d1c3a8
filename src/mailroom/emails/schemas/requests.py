"""What the API accepts for emails. Validation rules live here, one per field."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from mailroom.addresses import parse_mailbox
from mailroom.emails.attachments import (
    MAX_ATTACHMENTS,
    check_content_id,
    content_type_for,
    decode_content,
    encode_content,
    safe_filename,
)
from mailroom.emails.instants import in_utc, iso_8601_only
from mailroom.emails.schemas import CamelSchema
from mailroom.headers import built, header_safe, readable

MAX_RECIPIENTS = 50
MAX_SCHEDULE_DAYS = 30
MAX_REQUEUE = 10_000  # per request; requeued in transactions of operations.REQUEUE_BATCH
MAX_SUBJECT_LENGTH = 998  # RFC 5322's line limit
MAX_HEADERS = 50
MAX_HEADER_NAME_LENGTH = 76
MAX_HEADER_VALUE_LENGTH = 998
# Headers Mailroom writes itself; a caller setting them could forge or break the message.
# Then those only a receiving or signing system may write: a sender's copy would be taken
# for the receiver's verdict (Authentication-Results), a signature, a trace or a redirect.
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
        "dkim-signature",
        "domainkey-signature",
        "authentication-results",
        "received-spf",
        "delivered-to",
        "envelope-to",
        "x-original-to",
        "return-receipt-to",
        "disposition-notification-to",
        "errors-to",
    }
)
RESERVED_PREFIXES = ("content-", "arc-", "resent-")
_SURROGATE = re.compile("[\ud800-\udfff]")
# RFC 9110's token characters: every real header name, and nothing a decoder or a
# parser could read as syntax ("=?", quotes, brackets, ...).
_HEADER_NAME_CHARS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-.^_`|~"
)


def _at_most(limit: int, what: str) -> Callable[[Any], Any]:
    """A before-validator: a list (or object) longer than ``limit`` is refused before any of
    its items is validated, so a million of them cost one ``len``."""

    def check(value: Any) -> Any:
        if isinstance(value, list | dict) and len(value) > limit:
            raise PydanticCustomError(
                "too_long",
                "at most {limit} {what} ({given} given)",
                {"limit": limit, "what": what, "given": len(value)},
            )
        return value

    return check


def _one_or_many(value: Any) -> Any:
    return _at_most(MAX_RECIPIENTS, "addresses")([value] if isinstance(value, str) else value)


def _mailbox(value: str) -> str:
    return parse_mailbox(value).header


Addr = Annotated[str, AfterValidator(_mailbox)]
AddrList = Annotated[list[Addr], BeforeValidator(_one_or_many), Field(max_length=MAX_RECIPIENTS)]


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


class AttachmentIn(CamelSchema):
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


class SendEmailRequest(CamelSchema):
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
    headers: Annotated[dict[str, str], BeforeValidator(_at_most(MAX_HEADERS, "headers"))] = Field(
        default_factory=dict,
        max_length=MAX_HEADERS,
        description="Extra headers, e.g. X-Campaign or List-Unsubscribe",
    )
    attachments: Annotated[
        list[AttachmentIn], BeforeValidator(_at_most(MAX_ATTACHMENTS, "attachments"))
    ] = Field(
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
    ignore_suppressions: bool = Field(
        default=False, description="Send even to suppressed recipients (needs suppressions:write)"
    )

    @field_validator("subject")
    @classmethod
    def _subject(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return built("Subject", readable(header_safe(value)))

    @field_validator("text", "html")
    @classmethod
    def _body(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
        if _SURROGATE.search(value):
            # JSON can carry "\ud800"; no encoder can write it, so the email could never be
            # stored or sent.
            raise ValueError("must not contain a lone surrogate (it cannot be encoded)")
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
                    f"header name {name[:80]!r} may only contain letters, digits and "
                    "!#$%&'*+-.^_`|~"
                )
            lowered = name.lower()
            if lowered in RESERVED_HEADERS or lowered.startswith(RESERVED_PREFIXES):
                raise ValueError(
                    f"header {name!r} is set by Mailroom or by receiving systems and cannot "
                    "be given"
                )
            if lowered in seen:
                raise ValueError(f"header {name!r} is given more than once")
            seen.add(lowered)
            if len(header_value) > MAX_HEADER_VALUE_LENGTH:
                raise ValueError(
                    f"header {name!r} is longer than {MAX_HEADER_VALUE_LENGTH} characters"
                )
            try:
                built(name, header_safe(header_value))
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

    @model_validator(mode="before")
    @classmethod
    def _few_enough_recipients(cls, data: Any) -> Any:
        # Counted on the raw lists, before any address is validated.
        if isinstance(data, dict):
            count = sum(_raw_count(data.get(name)) for name in ("to", "cc", "bcc"))
            if count > MAX_RECIPIENTS:
                raise ValueError(
                    f"at most {MAX_RECIPIENTS} recipients in to, cc and bcc together "
                    f"({count} given)"
                )
        return data

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


MAX_BATCH = 500


def _raw_count(value: Any) -> int:
    if isinstance(value, str):
        return 1
    return len(value) if isinstance(value, list) else 0


# Items are validated one by one when accepted (see accepting), so that one bad email does not
# reject the other 499; the OpenAPI document still describes each as a SendEmailRequest.
_BatchItem = Annotated[Any, WithJsonSchema({"$ref": "#/components/schemas/SendEmailRequest"})]


class SendBatchRequest(CamelSchema):
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

    emails: Annotated[list[_BatchItem], BeforeValidator(_at_most(MAX_BATCH, "emails"))] = Field(
        min_length=1, max_length=MAX_BATCH, description=f"1 to {MAX_BATCH} emails"
    )


ErrorClass = Literal["4xx", "5xx", "connection"]


class RequeueRequest(CamelSchema):
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
