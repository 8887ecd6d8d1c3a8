"""The development inbox: the SMTP capture server and GET /dev/inbox."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.auth.scopes import Scope
from mailroom.devinbox.server import CaptureHandler, start_smtp_server
from mailroom.devinbox.store import Inbox
from mailroom.settings import Settings
from mailroom.transport.base import Envelope, Outcome
from mailroom.transport.smtp import SmtpConfig, SmtpTransport
from tests.conftest import api_client, make_key, running_worker
from tests.support.smtp_server import SmtpTestServer
from tests.support.waiting import eventually

pytestmark = pytest.mark.usefixtures("clean")

MESSAGE = (
    b"From: Sender <sender@example.com>\r\nTo: jane@example.com\r\nSubject: Hello <there>\r\n"
    b"Message-ID: <abc@example.com>\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: text/plain; charset="utf-8"\r\n\r\nHi Jane\r\n'
)


async def test_messages_sent_to_the_inbox_are_listed_newest_first(
    settings: Settings, api_key: str
) -> None:
    inbox = Inbox()
    server = await start_smtp_server(CaptureHandler(inbox), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = SmtpTransport(SmtpConfig(host="127.0.0.1", port=port))
    try:
        for subject in (b"first", b"second"):
            raw = MESSAGE.replace(b"Hello <there>", subject)
            result = await transport.send(
                Envelope("sender@example.com", ("jane@example.com",), raw)
            )
            assert result.outcome is Outcome.ACCEPTED
    finally:
        await transport.aclose()
        server.close()
        await server.wait_closed()

    async with api_client(settings, inbox=inbox, key=api_key) as client:
        listed = (await client.get("/dev/inbox")).json()
        assert [m["subject"] for m in listed] == ["second", "first"]
        assert listed[0]["envelopeTo"] == ["jane@example.com"]
        assert listed[0]["text"] == "Hi Jane\n"
        assert listed[0]["messageId"] == "<abc@example.com>"

        page = await client.get("/dev/inbox", headers={"Accept": "text/html"})
        assert page.headers["content-type"].startswith("text/html")
        assert "second" in page.text


async def test_html_view_escapes_what_it_shows(settings: Settings, api_key: str) -> None:
    inbox = Inbox()
    from mailroom.devinbox.store import CapturedMessage

    inbox.add(CapturedMessage("sender@example.com", ("jane@example.com",), MESSAGE))
    async with api_client(settings, inbox=inbox, key=api_key) as client:
        page = (await client.get("/dev/inbox", params={"format": "html"})).text
    assert "Hello &lt;there&gt;" in page
    assert "Hello <there>" not in page


async def test_the_inbox_needs_a_key_that_reaches_every_project(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    # It holds what every project sent; a key of one project reads only that project's mail.
    key = await make_key(sessions, (Scope.SEND, Scope.LOGS_READ, Scope.EMAILS_WRITE))
    async with api_client(settings, inbox=Inbox(), key=key) as client:
        response = await client.get("/dev/inbox")
    assert response.status_code == 403
    assert "admin" in response.json()["error"]["message"]


async def test_the_inbox_route_exists_only_in_dev_mode(client: httpx.AsyncClient) -> None:
    response = await client.get("/dev/inbox")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_under_mailroom_dev_a_sandbox_email_lands_in_the_dev_inbox(
    client: httpx.AsyncClient, settings: Settings, smtp_server: SmtpTestServer
) -> None:
    # As `mailroom dev` wires it: real mail to the SMTP server, sandbox mail to the inbox.
    inbox = Inbox()
    server = await start_smtp_server(CaptureHandler(inbox), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sandbox = SmtpTransport(SmtpConfig(host="127.0.0.1", port=port))
    try:
        async with running_worker(settings, smtp_server, sandbox_transport=sandbox):
            body = {"to": "jane@example.com", "subject": "Sandboxed", "text": "Hi"}
            sent = await client.post("/send", json=body, headers={"X-Sandbox": "true"})
            assert sent.status_code == 202, sent.text

            async def captured() -> list[str]:
                return [str(m.parsed()["Subject"]) for m in inbox]

            await eventually(captured, lambda s: s == ["Sandboxed"], what="the dev inbox")
    finally:
        await sandbox.aclose()
        server.close()
        await server.wait_closed()
    assert smtp_server.handler.messages() == []
    detail = (await client.get(f"/emails/{sent.json()['id']}")).json()
    assert (detail["status"], detail["sandbox"]) == ("sent", True)


async def test_an_internationalized_address_reaches_the_inbox() -> None:
    # The dev inbox offers SMTPUTF8, so `mailroom dev` delivers to jöhn@example.com too.
    inbox = Inbox()
    server = await start_smtp_server(CaptureHandler(inbox), "127.0.0.1", 0)
    transport = SmtpTransport(SmtpConfig(host="127.0.0.1", port=server.sockets[0].getsockname()[1]))
    raw = "From: sender@example.com\r\nTo: jöhn@example.com\r\nSubject: Hi\r\n\r\nHi\r\n".encode()
    try:
        result = await transport.send(Envelope("sender@example.com", ("jöhn@example.com",), raw))
    finally:
        await transport.aclose()
        server.close()
        await server.wait_closed()
    assert result.outcome is Outcome.ACCEPTED
    [message] = list(inbox)
    assert message.envelope_to == ("jöhn@example.com",)
