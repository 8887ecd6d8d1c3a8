"""Bounce and complaint reports by mail: DSNs (RFC 3464) and ARF reports (RFC 5965),
read with the standard library's email package.

A report names its email by the VERP return path it was sent to
(``bounces+<email id>@BOUNCE_DOMAIN``) or, failing that, by the original message's
Message-ID (in its ``message/rfc822`` or ``text/rfc822-headers`` part). Anything that is
neither kind of report becomes one event carrying the reason, kept as unmatched.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser, HeaderParser
from typing import Any

from mailroom.emails.feedback import FeedbackEvent, normalize_message_id
from mailroom.emails.message import email_id_from_return_path

MAX_RAW = 64 * 1024


def parse_report(
    raw: bytes, *, envelope_to: Sequence[str], bounce_domain: str | None
) -> list[FeedbackEvent]:
    email_id = next(
        (i for a in envelope_to if (i := email_id_from_return_path(a, bounce_domain))), None
    )
    try:
        message = BytesParser(policy=policy.default).parsebytes(raw)
        events = _events(message, email_id)
    except Exception as exc:  # noqa: BLE001  (any malformed input becomes an unmatched report)
        return [_unreadable(raw, f"unreadable report: {type(exc).__name__}: {exc}"[:500])]
    if isinstance(events, str):
        return [_unreadable(raw, events)]
    return events


def _unreadable(raw: bytes, why: str) -> FeedbackEvent:
    return FeedbackEvent(
        provider="dsn",
        kind="unknown",
        parse_error=why,
        raw=raw[:MAX_RAW].decode("utf-8", "replace"),
    )


def _events(message: EmailMessage, email_id: uuid.UUID | None) -> list[FeedbackEvent] | str:
    if message.get_content_type() != "multipart/report":
        return f"not a DSN or ARF report (Content-Type: {message.get_content_type()})"
    report_type = str(message.get_param("report-type", "", header="content-type")).lower()
    report_id = str(message.get("Message-ID", "")).strip() or None
    original = _original_message_id(message)
    if report_type == "delivery-status":
        return _dsn(message, email_id, original, report_id)
    if report_type == "feedback-report":
        return _arf(message, email_id, original, report_id)
    return f"a multipart/report of type {report_type!r}, not delivery-status or feedback-report"


def _parts(message: Message) -> list[Message]:
    return [p for p in message.walk() if p is not message]


def _original_message_id(message: Message) -> str | None:
    for part in _parts(message):
        kind = part.get_content_type()
        if kind == "message/rfc822":
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            if isinstance(inner, Message) and inner.get("Message-ID"):
                return normalize_message_id(str(inner["Message-ID"]))
        elif kind == "text/rfc822-headers":
            text = part.get_payload(decode=True)
            if isinstance(text, bytes):
                headers = HeaderParser().parsestr(text.decode("utf-8", "replace"))
                if headers.get("Message-ID"):
                    return normalize_message_id(str(headers["Message-ID"]))
    return None


def _dsn(
    message: Message, email_id: uuid.UUID | None, original: str | None, report_id: str | None
) -> list[FeedbackEvent] | str:
    status_part = next(
        (p for p in _parts(message) if p.get_content_type() == "message/delivery-status"), None
    )
    if status_part is None:
        return "a delivery-status report without its message/delivery-status part"
    blocks: Any = status_part.get_payload()
    if not isinstance(blocks, list) or len(blocks) < 2:
        return "a message/delivery-status part without per-recipient fields"
    events: list[FeedbackEvent] = []
    for block in blocks[1:]:
        recipient = _address(block.get("Final-Recipient") or block.get("Original-Recipient"))
        action = str(block.get("Action", "")).strip().lower()
        status = str(block.get("Status", "")).strip() or None
        if action == "failed":
            kind, bounce = "bounced", "hard" if (status or "5").startswith("5") else "soft"
        elif action in ("delivered", "relayed", "expanded"):
            kind, bounce = "delivered", None
        else:
            continue  # "delayed": still being tried; a later report says how it ended
        events.append(
            FeedbackEvent(
                provider="dsn",
                kind=kind,  # type: ignore[arg-type]
                recipient=recipient,
                bounce_type=bounce,  # type: ignore[arg-type]
                diagnostic_code=_text(block.get("Diagnostic-Code")),
                status_code=status,
                provider_event_id=f"{report_id}:{recipient}" if report_id else None,
                message_id=original,
                email_id=email_id,
            )
        )
    if not events:
        return "a DSN with no failed or delivered recipient"
    return events


def _arf(
    message: Message, email_id: uuid.UUID | None, original: str | None, report_id: str | None
) -> list[FeedbackEvent] | str:
    part = next(
        (p for p in _parts(message) if p.get_content_type() == "message/feedback-report"), None
    )
    if part is None:
        return "a feedback-report without its message/feedback-report part"
    payload = part.get_payload()
    fields = payload[0] if isinstance(payload, list) and payload else part
    if not isinstance(fields, Message):
        return "an unreadable message/feedback-report part"
    feedback_type = str(fields.get("Feedback-Type", "")).strip().lower()
    if not feedback_type:
        return "a feedback report without Feedback-Type"
    recipient = _address(fields.get("Original-Rcpt-To"))
    return [
        FeedbackEvent(
            provider="arf",
            kind="complained",
            recipient=recipient,
            diagnostic_code=feedback_type,
            provider_event_id=f"{report_id}:{recipient}" if report_id else None,
            message_id=original,
            email_id=email_id,
        )
    ]


def _address(value: Any) -> str | None:
    """``rfc822; jane@example.com`` → ``jane@example.com``."""
    if value is None:
        return None
    _, _, address = str(value).rpartition(";")
    address = address.strip().strip("<>").strip()
    return address or None


def _text(value: Any) -> str | None:
    return " ".join(str(value).split()) if value else None
