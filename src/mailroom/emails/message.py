"""Building the RFC 5322 message, only ever with ``email.message.EmailMessage``.

The modern API refuses CR/LF in header values; the legacy MIME classes would
happily emit an injected header. Control characters are also refused earlier, at
validation, so this is the second of two locks. How it is written out (7-bit bodies,
literal headers, identical bytes on every attempt) is ``message_format``'s.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime

from mailroom.addresses import parse_mailbox
from mailroom.emails.attachments import Attachment
from mailroom.emails.message_format import (
    POLICY,
    UTF8_POLICY,
    stable_bytes,
    text_transfer_encoding,
)
from mailroom.emails.models import Email
from mailroom.headers import header_safe


def new_message_id(domain: str) -> str:
    return f"<{uuid.uuid4().hex}@{domain}>"


def build_message(
    email: Email,
    attachments: Sequence[Attachment] = (),
    extra_headers: Sequence[tuple[str, str]] = (),
) -> bytes:
    """The message's bytes: the same on every attempt, 7-bit but for SMTPUTF8 headers.

    ``extra_headers`` are Mailroom's own (derived from the email and the settings only, so
    they too are the same on every attempt).
    """
    message = EmailMessage(policy=UTF8_POLICY if needs_smtputf8(email) else POLICY)
    message["From"] = email.sender
    message["To"] = ", ".join(email.to_addrs)
    if email.cc_addrs:
        message["Cc"] = ", ".join(email.cc_addrs)
    if email.reply_to:
        message["Reply-To"] = ", ".join(email.reply_to)
    message["Subject"] = header_safe(email.subject)
    # The acceptance time, so that every retry sends the same message.
    message["Date"] = format_datetime(_aware(email.created_at))
    message["Message-ID"] = email.message_id
    for name, value in (*email.headers.items(), *extra_headers):
        message[name] = header_safe(value)
    text, html = email.text_body, email.html_body
    if text is not None:
        message.set_content(text, cte=text_transfer_encoding(text))
        if html is not None:
            message.add_alternative(html, subtype="html", cte=text_transfer_encoding(html))
    elif html is not None:
        message.set_content(html, subtype="html", cte=text_transfer_encoding(html))
    _attach(message, attachments)
    return stable_bytes(message, email.message_id)


def needs_smtputf8(email: Email) -> bool:
    """An address in the headers has a non-ASCII local part (RFC 6531/6532)."""
    headers = (email.sender, *email.to_addrs, *email.cc_addrs, *email.reply_to)
    return not all(parse_mailbox(h).address.isascii() for h in headers)


def _attach(message: EmailMessage, attachments: Sequence[Attachment]) -> None:
    """Inline images join the HTML part (multipart/related); other files follow it.

    The structure every client renders: mixed( alternative( text, related( html, images ) ),
    files ). An inline image without an HTML body is attached like any other file.
    """
    for a in attachments:  # validated on the way in; checked again on the way out
        header_safe(a.filename)
        if a.content_id is not None:
            header_safe(a.content_id)
    inline = [a for a in attachments if a.content_id is not None]
    html = _html_part(message) if inline else None
    for a in attachments:
        maintype, _, subtype = a.content_type.partition("/")
        if a.content_id is not None and html is not None:
            html.add_related(
                a.content,
                maintype=maintype,
                subtype=subtype,
                cid=f"<{a.content_id}>",
                filename=a.filename,
                disposition="inline",
            )
    for a in attachments:
        if a.content_id is not None and html is not None:
            continue
        maintype, _, subtype = a.content_type.partition("/")
        headers = [f"Content-ID: <{a.content_id}>"] if a.content_id is not None else None
        message.add_attachment(
            a.content, maintype=maintype, subtype=subtype, filename=a.filename, headers=headers
        )


def _html_part(message: EmailMessage) -> EmailMessage | None:
    if message.get_content_type() == "text/html":
        return message
    for part in message.iter_parts():
        if isinstance(part, EmailMessage) and part.get_content_type() == "text/html":
            return part
    return None


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("created_at must be timezone-aware")
    return value


def envelope_addresses(email: Email) -> tuple[str, tuple[str, ...]]:
    """The SMTP envelope: the bare sender, and each recipient once (Bcc included), less
    those on the suppression list when it was accepted (its headers still name them)."""
    return parse_mailbox(email.sender).address, envelope_recipients(email)


def envelope_recipients(email: Email) -> tuple[str, ...]:
    """The envelope's recipients alone (see envelope_addresses)."""
    seen: dict[str, str] = {}
    left_out = {a.lower() for a in email.suppressed_recipients or ()}
    for header in (*email.to_addrs, *email.cc_addrs, *email.bcc_addrs):
        address = parse_mailbox(header).address
        if address.lower() not in left_out:
            seen.setdefault(address.lower(), address)
    return tuple(seen.values())


VERP_PREFIX = "bounces+"


def return_path(email: Email, bounce_domain: str | None) -> str | None:
    """The VERP envelope sender ``bounces+<email id>@BOUNCE_DOMAIN``: a bounce sent back to
    it names its email even when the report drops the original headers."""
    return f"{VERP_PREFIX}{email.id.hex}@{bounce_domain}" if bounce_domain else None


def email_id_from_return_path(address: str, bounce_domain: str | None) -> uuid.UUID | None:
    """The email id in a VERP address at BOUNCE_DOMAIN (any case), else None."""
    local, _, domain = address.strip().strip("<>").rpartition("@")
    if not bounce_domain or domain.lower() != bounce_domain.lower():
        return None
    if not local.lower().startswith(VERP_PREFIX):
        return None
    try:
        return uuid.UUID(hex=local[len(VERP_PREFIX) :])
    except ValueError:
        return None
