"""Building the RFC 5322 message, only ever with ``email.message.EmailMessage``.

The modern API refuses CR/LF in header values; the legacy MIME classes would
happily emit an injected header. Control characters are also refused earlier, at
validation, so this is the second of two locks.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime

from mailroom.emails.addresses import parse_mailbox
from mailroom.emails.models import Email


def new_message_id(domain: str) -> str:
    return f"<{uuid.uuid4().hex}@{domain}>"


def build_message(email: Email) -> bytes:
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = email.sender
    message["To"] = ", ".join(email.to_addrs)
    if email.cc_addrs:
        message["Cc"] = ", ".join(email.cc_addrs)
    if email.reply_to:
        message["Reply-To"] = ", ".join(email.reply_to)
    message["Subject"] = email.subject
    # The acceptance time, so that every retry sends the same message.
    message["Date"] = format_datetime(_aware(email.created_at))
    message["Message-ID"] = email.message_id
    for name, value in email.headers.items():
        message[name] = value
    if email.text_body is not None:
        message.set_content(email.text_body)
        if email.html_body is not None:
            message.add_alternative(email.html_body, subtype="html")
    elif email.html_body is not None:
        message.set_content(email.html_body, subtype="html")
    return message.as_bytes()


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("created_at must be timezone-aware")
    return value


def envelope_addresses(email: Email) -> tuple[str, tuple[str, ...]]:
    """The SMTP envelope: the bare sender, and each recipient once (Bcc included)."""
    seen: dict[str, str] = {}
    for header in (*email.to_addrs, *email.cc_addrs, *email.bcc_addrs):
        address = parse_mailbox(header).address
        seen.setdefault(address.lower(), address)
    return parse_mailbox(email.sender).address, tuple(seen.values())
