"""`mailroom bounces`' listener: real DSN and ARF reports, built here, sent over SMTP and
LMTP to the listener, matched by VERP return path or by Message-ID."""

from __future__ import annotations

import asyncio
import smtplib
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.feedback import listener
from mailroom.settings import Settings
from tests.conftest import running_worker
from tests.support.factories import email_row, insert_emails
from tests.support.smtp_server import SmtpTestServer
from tests.support.waiting import eventually

DOMAIN = "bounces.example.com"


def dsn(*, recipient: str, status: str, original: str, report_id: str) -> bytes:
    """A DSN as RFC 3464's examples lay it out."""
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\r\n"
        "To: <bounce@example.com>\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: {report_id}\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n'
        "\r\n"
        "--B\r\n"
        "Content-Type: text/plain\r\n"
        "\r\n"
        "I'm sorry to have to inform you that your message could not be delivered.\r\n"
        "--B\r\n"
        "Content-Type: message/delivery-status\r\n"
        "\r\n"
        "Reporting-MTA: dns; mx.example.net\r\n"
        "Arrival-Date: Fri, 4 Dec 2026 20:00:00 +0000\r\n"
        "\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\n"
        f"Original-Recipient: rfc822;{recipient}\r\n"
        "Action: failed\r\n"
        f"Status: {status}\r\n"
        "Remote-MTA: dns; mail.example.org\r\n"
        f"Diagnostic-Code: smtp; 550 {status} <{recipient}>: Recipient address\r\n"
        "    rejected: User unknown in local recipient table\r\n"
        "--B\r\n"
        f"{original}"
        "--B--\r\n"
    ).encode()


def headers_part(message_id: str | None) -> str:
    line = f"Message-ID: {message_id}\r\n" if message_id else ""
    return (
        "Content-Type: text/rfc822-headers\r\n\r\n"
        f"From: sender@example.com\r\nTo: jane@example.com\r\n{line}Subject: Hello\r\n"
    )


def message_part(message_id: str) -> str:
    return (
        "Content-Type: message/rfc822\r\n\r\n"
        f"From: sender@example.com\r\nTo: jane@example.com\r\nMessage-ID: {message_id}\r\n"
        "Subject: Hello\r\n\r\nHi\r\n"
    )


def arf(*, recipient: str, message_id: str) -> bytes:
    """An ARF complaint as RFC 5965's example lays it out."""
    return (
        "From: <abusedesk@example.net>\r\n"
        "To: <bounce@example.com>\r\n"
        "Subject: FW: Hello\r\n"
        f"Message-ID: <arf-{uuid.uuid4().hex}@example.net>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="part1"\r\n'
        "\r\n"
        "--part1\r\n"
        "Content-Type: text/plain\r\n\r\nThis is an email abuse report.\r\n"
        "--part1\r\n"
        "Content-Type: message/feedback-report\r\n\r\n"
        "Feedback-Type: abuse\r\n"
        "User-Agent: SomeGenerator/1.0\r\n"
        "Version: 1\r\n"
        f"Original-Rcpt-To: <{recipient}>\r\n"
        "--part1\r\n"
        f"{message_part(message_id)}"
        "--part1--\r\n"
    ).encode()


@pytest.fixture
async def bounce_settings(settings_factory: Callable[..., Settings]) -> Settings:
    return settings_factory(bounce_domain=DOMAIN)


@pytest.fixture
async def listening(
    bounce_settings: Settings, sessions: async_sessionmaker[AsyncSession], clean: None
) -> AsyncIterator[int]:
    server = await listener.start(sessions, bounce_settings, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


def _deliver(port: int, to: str, raw: bytes, *, lmtp: bool = False) -> None:
    client = smtplib.LMTP("127.0.0.1", port) if lmtp else smtplib.SMTP("127.0.0.1", port)
    with client:
        client.sendmail("", [to], raw)


async def _sent(sessions: async_sessionmaker[AsyncSession]) -> tuple[uuid.UUID, str]:
    email_id = uuid.uuid4()
    message_id = f"<{email_id.hex}@example.com>"
    await insert_emails(
        sessions, email_row(datetime.now(UTC), "sent", id=email_id, message_id=message_id)
    )
    return email_id, message_id


async def test_a_dsn_to_the_verp_address_bounces_its_email(
    listening: int, sessions: async_sessionmaker[AsyncSession], client: httpx.AsyncClient
) -> None:
    email_id, _ = await _sent(sessions)
    # The report kept no Message-ID: only the return path says which email it was.
    raw = dsn(
        recipient="jane@example.com",
        status="5.1.1",
        original=headers_part(None),
        report_id="<r1@mx.example.net>",
    )
    await asyncio.to_thread(_deliver, listening, f"bounces+{email_id.hex}@{DOMAIN}", raw)

    detail = (await client.get(f"/emails/{email_id}")).json()
    assert detail["status"] == "bounced"
    [event] = detail["feedback"]
    assert event["provider"] == "dsn" and event["statusCode"] == "5.1.1"
    assert "User unknown" in event["diagnosticCode"]
    assert (await client.get("/suppressions/jane@example.com")).json()["reason"] == "hard_bounce"


async def test_a_dsn_matched_by_message_id_over_lmtp(
    bounce_settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    client: httpx.AsyncClient,
) -> None:
    server = await listener.start(sessions, bounce_settings, "127.0.0.1", 0, lmtp=True)
    port = server.sockets[0].getsockname()[1]
    try:
        email_id, message_id = await _sent(sessions)
        raw = dsn(
            recipient="jane@example.com",
            status="5.7.1",  # a policy block: bounced, but the address is not suppressed
            original=message_part(message_id),
            report_id="<r2@mx.example.net>",
        )
        await asyncio.to_thread(_deliver, port, "postmaster@example.com", raw, lmtp=True)
    finally:
        server.close()
        await server.wait_closed()
    detail = (await client.get(f"/emails/{email_id}")).json()
    assert detail["bounced"] is True and detail["status"] == "sent"
    assert (await client.get("/suppressions/jane@example.com")).status_code == 404


async def test_an_arf_complaint(
    listening: int, sessions: async_sessionmaker[AsyncSession], client: httpx.AsyncClient
) -> None:
    email_id, message_id = await _sent(sessions)
    raw = arf(recipient="jane@example.com", message_id=message_id)
    await asyncio.to_thread(_deliver, listening, "abuse@example.com", raw)
    detail = (await client.get(f"/emails/{email_id}")).json()
    assert detail["complained"] is True
    assert detail["feedback"][0]["kind"] == "complained"
    assert (await client.get("/suppressions/jane@example.com")).json()["reason"] == "complaint"


async def test_what_is_not_a_report_is_kept_unmatched_with_why(
    listening: int, client: httpx.AsyncClient
) -> None:
    raw = b"From: someone@example.net\r\nSubject: out of office\r\n\r\nI am away.\r\n"
    await asyncio.to_thread(_deliver, listening, f"bounces+nothex@{DOMAIN}", raw)
    unknown = dsn(
        recipient="x@example.com",
        status="5.1.1",
        original=headers_part("<not-ours@example.com>"),
        report_id="<r3@mx.example.net>",
    )
    await asyncio.to_thread(_deliver, listening, "bounce@example.com", unknown)
    items = (await client.get("/feedback/unmatched")).json()["data"]
    reasons = {i["reason"] for i in items}
    assert "not a DSN or ARF report (Content-Type: text/plain)" in reasons
    assert "no email has this Message-ID" in reasons
    assert any("I am away." in (i["raw"] or "") for i in items)


async def test_the_worker_sends_from_the_verp_address(
    bounce_settings: Settings, smtp_server: SmtpTestServer, client: httpx.AsyncClient
) -> None:
    async with running_worker(bounce_settings, smtp_server):
        accepted = (
            await client.post("/send", json={"to": "jane@example.com", "subject": "s", "text": "t"})
        ).json()
        await eventually(
            lambda: asyncio.sleep(0, smtp_server.handler.messages()),
            lambda m: len(m) == 1,
            what="the message",
        )
    [message] = smtp_server.handler.messages()
    assert message.envelope_from == f"bounces+{uuid.UUID(accepted['id']).hex}@{DOMAIN}"
