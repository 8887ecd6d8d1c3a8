"""Building the RFC 5322 message and the SMTP envelope from a stored Email."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta, timezone
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest

from mailroom.emails.message import build_message, envelope_addresses, new_message_id
from mailroom.emails.models import Email

CREATED = datetime(2026, 11, 27, 9, 30, 15, tzinfo=UTC)


def make_email(**overrides: Any) -> Email:
    values: dict[str, Any] = {
        "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "sender": "Mailroom <no-reply@example.com>",
        "to_addrs": ["Jane Doe <jane@example.com>"],
        "cc_addrs": [],
        "bcc_addrs": [],
        "reply_to": [],
        "recipients": ["jane@example.com"],
        "subject": "Your receipt",
        "text_body": "Thanks for your order.",
        "html_body": None,
        "headers": {},
        "message_id": "<0123456789abcdef@example.com>",
        "request_id": None,
        "status": "queued",
        "attempts": 0,
        "created_at": CREATED,
        "updated_at": CREATED,
    }
    values.update(overrides)
    return Email(**values)


def parse(raw: bytes) -> EmailMessage:
    parsed = message_from_bytes(raw, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def content(part: object) -> str:
    """A text part's content with the wire's CRLF line endings turned back into LF."""
    assert isinstance(part, EmailMessage)
    text = part.get_content()
    assert isinstance(text, str)
    return text.replace("\r\n", "\n")


# -- headers ------------------------------------------------------------------------------


def test_standard_headers() -> None:
    email = make_email(
        to_addrs=['"Doe, Jane" <jane@example.com>', "bob@example.org"],
        cc_addrs=["Carol <carol@example.net>"],
        reply_to=["help@example.com", "Support <support@example.com>"],
    )
    parsed = parse(build_message(email))
    assert parsed["From"] == "Mailroom <no-reply@example.com>"
    assert parsed["To"] == '"Doe, Jane" <jane@example.com>, bob@example.org'
    assert parsed["Cc"] == "Carol <carol@example.net>"
    assert parsed["Reply-To"] == "help@example.com, Support <support@example.com>"
    assert parsed["Subject"] == "Your receipt"
    assert parsed["Date"] == "Fri, 27 Nov 2026 09:30:15 +0000"
    assert parsed["Message-ID"] == "<0123456789abcdef@example.com>"
    assert parsed["MIME-Version"] == "1.0"
    to_addresses = [a.addr_spec for a in parsed["To"].addresses]
    assert to_addresses == ["jane@example.com", "bob@example.org"]
    assert parsed["To"].addresses[0].display_name == "Doe, Jane"


def test_each_header_appears_once() -> None:
    raw = build_message(make_email(cc_addrs=["c@example.com"], reply_to=["r@example.com"]))
    parsed = parse(raw)
    for name in ("From", "To", "Cc", "Reply-To", "Subject", "Date", "Message-ID"):
        assert len(parsed.get_all(name) or []) == 1, name


def test_no_cc_or_reply_to_header_when_empty() -> None:
    parsed = parse(build_message(make_email()))
    assert "Cc" not in parsed
    assert "Reply-To" not in parsed


def test_bcc_is_never_a_header() -> None:
    email = make_email(bcc_addrs=["Secret <secret@example.com>", "hidden@example.org"])
    raw = build_message(email)
    parsed = parse(raw)
    assert "Bcc" not in parsed
    assert b"secret@example.com" not in raw
    assert b"hidden@example.org" not in raw
    assert b"bcc" not in raw.lower()


def test_date_keeps_the_acceptance_offset() -> None:
    created = datetime(2026, 3, 1, 23, 5, 0, tzinfo=timezone(timedelta(hours=-5)))
    parsed = parse(build_message(make_email(created_at=created)))
    assert parsed["Date"] == "Sun, 01 Mar 2026 23:05:00 -0500"
    assert parsed["Date"].datetime == created


def test_naive_created_at_is_refused() -> None:
    with pytest.raises(ValueError, match="created_at must be timezone-aware"):
        build_message(make_email(created_at=datetime(2026, 1, 1, 12, 0)))


def test_same_email_builds_the_same_message_except_boundary() -> None:
    email = make_email(html_body="<p>Hi</p>")
    first, second = build_message(email), build_message(email)

    def headers(raw: bytes) -> bytes:
        return raw.split(b"\r\n\r\n", 1)[0].split(b"Content-Type")[0]

    assert headers(first) == headers(second)


def test_extra_headers_are_included() -> None:
    email = make_email(
        headers={
            "X-Campaign": "spring-sale",
            "List-Unsubscribe": "<https://example.com/unsubscribe?u=1>",
        }
    )
    parsed = parse(build_message(email))
    assert parsed["X-Campaign"] == "spring-sale"
    assert parsed["List-Unsubscribe"] == "<https://example.com/unsubscribe?u=1>"


def test_non_ascii_extra_header_is_encoded() -> None:
    raw = build_message(make_email(headers={"X-Note": "Grüße"}))
    assert raw.split(b"\r\n\r\n", 1)[0].isascii()
    assert parse(raw)["X-Note"] == "Grüße"


def test_non_ascii_subject_is_rfc2047_encoded_and_round_trips() -> None:
    subject = "Grüße \u2013 your order №42 is on its way 🚚"
    raw = build_message(make_email(subject=subject))
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert head.isascii()
    subject_line = re.search(rb"^Subject: (.*(?:\r\n[ \t].*)*)", head, re.MULTILINE)
    assert subject_line is not None
    assert b"=?utf-8?" in subject_line.group(1)
    assert parse(raw)["Subject"] == subject


def test_non_ascii_display_name_round_trips() -> None:
    email = make_email(
        sender="Bücherei Müller <shop@example.com>",
        to_addrs=["Zoë Ångström <zoe@example.com>"],
    )
    raw = build_message(email)
    assert raw.split(b"\r\n\r\n", 1)[0].isascii()
    parsed = parse(raw)
    assert parsed["From"].addresses[0].display_name == "Bücherei Müller"
    assert parsed["To"].addresses[0].display_name == "Zoë Ångström"
    assert parsed["To"].addresses[0].addr_spec == "zoe@example.com"


def test_long_subject_is_folded_and_round_trips() -> None:
    subject = " ".join(["word"] * 60)
    raw = build_message(make_email(subject=subject))
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert parse(raw)["Subject"] == subject


# -- line endings -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "html"),
    [("one\ntwo\nthree", None), (None, "<p>a</p>\n<p>b</p>"), ("one\ntwo", "<p>a</p>\n<p>b</p>")],
)
def test_output_uses_crlf_only(text: str | None, html: str | None) -> None:
    raw = build_message(make_email(text_body=text, html_body=html))
    assert b"\r\n" in raw
    assert re.search(rb"(?<!\r)\n", raw) is None
    assert re.search(rb"\r(?!\n)", raw) is None
    assert raw.endswith(b"\r\n")


# -- bodies -------------------------------------------------------------------------------


def test_text_only_is_text_plain() -> None:
    parsed = parse(build_message(make_email(text_body="Hello Jane,\nthanks.", html_body=None)))
    assert parsed.get_content_type() == "text/plain"
    assert not parsed.is_multipart()
    assert parsed.get_content_charset() in {"utf-8", "us-ascii"}
    assert content(parsed) == "Hello Jane,\nthanks.\n"


def test_html_only_is_text_html() -> None:
    parsed = parse(build_message(make_email(text_body=None, html_body="<p>Hello</p>")))
    assert parsed.get_content_type() == "text/html"
    assert not parsed.is_multipart()
    assert content(parsed) == "<p>Hello</p>\n"


def test_text_and_html_is_multipart_alternative() -> None:
    email = make_email(text_body="Hello, plain.", html_body="<p>Hello, <b>rich</b>.</p>")
    parsed = parse(build_message(email))
    assert parsed.get_content_type() == "multipart/alternative"
    parts = list(parsed.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert content(parts[0]) == "Hello, plain.\n"
    assert content(parts[1]) == "<p>Hello, <b>rich</b>.</p>\n"
    body = parsed.get_body(preferencelist=("html", "plain"))
    assert body is not None
    assert body.get_content_type() == "text/html"


def test_non_ascii_bodies_round_trip() -> None:
    text = "Grüße aus Köln ☕\nZeile zwei"
    html = "<p>Grüße aus Köln ☕</p>"
    parsed = parse(build_message(make_email(text_body=text, html_body=html)))
    parts = list(parsed.iter_parts())
    assert content(parts[0]) == text + "\n"
    assert content(parts[1]) == html + "\n"


def test_body_line_starting_with_a_dot_or_from_survives() -> None:
    text = ".hidden line\nFrom the start\n."
    parsed = parse(build_message(make_email(text_body=text)))
    assert content(parsed) == text + "\n"


# -- envelope -----------------------------------------------------------------------------


def test_envelope_has_bare_sender_and_every_recipient() -> None:
    email = make_email(
        sender='"Acme, Inc." <no-reply@acme.example.com>',
        to_addrs=["Jane <jane@example.com>", "bob@example.org"],
        cc_addrs=["Carol <carol@example.net>"],
        bcc_addrs=["Audit <audit@example.com>"],
    )
    assert envelope_addresses(email) == (
        "no-reply@acme.example.com",
        ("jane@example.com", "bob@example.org", "carol@example.net", "audit@example.com"),
    )


def test_envelope_lists_each_recipient_once_ignoring_case() -> None:
    email = make_email(
        to_addrs=["Jane <jane@example.com>", "JANE@EXAMPLE.COM"],
        cc_addrs=["jane@Example.com", "Bob <bob@example.org>"],
        bcc_addrs=["bob@example.org", "Jane Again <Jane@example.com>", "new@example.org"],
    )
    sender, recipients = envelope_addresses(email)
    assert sender == "no-reply@example.com"
    # The first spelling wins; order is first appearance across to, cc, bcc.
    assert recipients == ("jane@example.com", "bob@example.org", "new@example.org")


def test_envelope_bcc_only_recipient_is_included() -> None:
    email = make_email(to_addrs=["a@example.com"], bcc_addrs=["b@example.com"])
    assert envelope_addresses(email) == ("no-reply@example.com", ("a@example.com", "b@example.com"))


def test_envelope_idn_domain_is_punycode() -> None:
    email = make_email(sender="shop@bücher.de", to_addrs=["kunde@münchen.de"])
    assert envelope_addresses(email) == (
        "shop@xn--bcher-kva.de",
        ("kunde@xn--mnchen-3ya.de",),
    )


# -- Message-ID ---------------------------------------------------------------------------


def test_new_message_id_format() -> None:
    message_id = new_message_id("mail.example.com")
    assert re.fullmatch(r"<[0-9a-f]{32}@mail\.example\.com>", message_id)


def test_new_message_id_is_unique() -> None:
    ids = {new_message_id("example.com") for _ in range(1000)}
    assert len(ids) == 1000


def test_new_message_id_parses_as_a_message_id_header() -> None:
    message_id = new_message_id("example.com")
    parsed = parse(build_message(make_email(message_id=message_id)))
    assert parsed["Message-ID"] == message_id
