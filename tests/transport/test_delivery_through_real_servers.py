"""From POST /send to a real SMTP server through a running worker: what the log then says.

Postfix's smtp-sink and aiosmtpd stand in for providers: one that answers AUTH with 250,
one without 8BITMIME or SMTPUTF8 (smtp-sink ``-8``), one with SMTPUTF8 (aiosmtpd).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from mailroom.settings import Settings
from mailroom.transport.smtp import SmtpConfig, SmtpTransport
from mailroom.worker.runner import DeliveryWorker
from tests.conftest import api_client
from tests.support.smtp_sink import smtp_sink
from tests.support.waiting import eventually
from tests.transport.conftest import RecordingHandler, aiosmtpd_server, port_of

pytestmark = pytest.mark.usefixtures("clean")

LIST_UNSUBSCRIBE = (
    "<https://news.example.com/unsubscribe?list=weekly&token=" + "k" * 80 + ">, "
    "<mailto:unsubscribe@news.example.com?subject=unsubscribe>"
)


@asynccontextmanager
async def delivering(
    settings: Settings, api_key: str, **smtp: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """The API, and a worker delivering through an SmtpTransport with ``smtp`` settings."""
    transport = SmtpTransport(SmtpConfig(**{"host": "127.0.0.1", "timeout": 5, **smtp}))
    worker = DeliveryWorker(settings, transport=transport, grace_period=5)
    async with api_client(settings, key=api_key) as client:
        await worker.start()
        try:
            yield client
        finally:
            await worker.stop()


async def accepted_id(client: httpx.AsyncClient, email: dict[str, Any]) -> str:
    response = await client.post("/send", json=email)
    assert response.status_code == 202, response.text
    email_id: str = response.json()["id"]
    return email_id


async def settled(client: httpx.AsyncClient, email_id: str) -> dict[str, Any]:
    """The email once an attempt is recorded and it is not (again) being sent."""

    async def detail() -> dict[str, Any]:
        body: dict[str, Any] = (await client.get(f"/emails/{email_id}")).json()
        return body

    # The detail reads the email and its attempts in two statements: wait for both.
    return await eventually(
        detail,
        lambda e: bool(e["deliveryAttempts"]) and e["status"] not in ("queued", "sending"),
        what="a recorded attempt",
    )


async def test_a_250_to_auth_never_makes_an_email_sent(settings: Settings, api_key: str) -> None:
    async with smtp_sink() as sink:  # answers AUTH with 250, as if it meant "ok"
        async with delivering(
            settings,
            api_key,
            port=sink.port,
            username="mailer",
            password="s3cret",
            allow_insecure_auth=True,
        ) as client:
            email_id = await accepted_id(
                client, {"to": "jane@example.com", "subject": "Hi", "text": "Hello"}
            )
            email = await settled(client, email_id)
        dumps = sink.dumps()
    assert email["status"] in ("retrying", "failed")
    assert email["sentAt"] is None
    first = email["deliveryAttempts"][0]
    assert (first["outcome"], first["code"]) == ("transient", 250)
    assert dumps == []


async def test_an_international_address_goes_out_with_smtputf8(
    settings: Settings, api_key: str
) -> None:
    handler = RecordingHandler()
    email = {"to": "Jöhn <jöhn@example.com>", "subject": "Grüße", "text": "Hallo"}
    async with aiosmtpd_server(handler, enable_SMTPUTF8=True) as server:
        port = port_of(server)
        async with delivering(settings, api_key, port=port) as client:
            email = await settled(client, await accepted_id(client, email))
    assert email["status"] == "sent", email
    [received] = handler.messages()
    assert received.envelope_to == ("jöhn@example.com",)
    assert "SMTPUTF8" in handler.mail_options[0]
    assert received.parsed()["To"] == "Jöhn <jöhn@example.com>"


async def test_an_international_address_without_smtputf8_fails_for_good(
    settings: Settings, api_key: str
) -> None:
    async with smtp_sink() as sink:  # offers no SMTPUTF8
        async with delivering(settings, api_key, port=sink.port) as client:
            email_id = await accepted_id(
                client, {"to": "jöhn@example.com", "subject": "Hi", "text": "Hello"}
            )
            email = await settled(client, email_id)
        dumps = sink.dumps()
    assert email["status"] == "failed"
    assert email["error"]["message"].startswith("smtputf8_not_supported: ")
    assert email["error"]["enhancedCode"] == "5.6.7"
    assert dumps == []


async def test_a_message_for_a_7_bit_server_arrives_intact(
    settings: Settings, api_key: str
) -> None:
    text = "Grüße aus Köln.\n.Eine Zeile mit Punkt.\n" + "Lang " * 300 + "\n"
    html = "<p>Grüße aus <b>Köln</b></p>"
    async with smtp_sink("-8") as sink:  # no 8BITMIME
        async with delivering(settings, api_key, port=sink.port) as client:
            email_id = await accepted_id(
                client,
                {
                    "to": "jane@example.com",
                    "subject": "Grüße, " + "a long subject " * 8,
                    "text": text,
                    "html": html,
                    "headers": {"List-Unsubscribe": LIST_UNSUBSCRIBE},
                },
            )
            email = await settled(client, email_id)
        [dump] = sink.dumps()
    assert email["status"] == "sent", email
    assert dump.raw.isascii()  # not one 8-bit byte to a server without 8BITMIME
    assert "BODY=8BITMIME" not in dump.mail
    message = dump.message()
    # Literal, folded at its own whitespace at most: unfolding gives it back exactly.
    assert re.sub(r"\r?\n(?=[ \t])", "", message["List-Unsubscribe"]) == LIST_UNSUBSCRIBE
    parts = {p.get_content_type(): p for p in message.walk() if not p.is_multipart()}
    plain = parts["text/plain"].get_payload(decode=True)
    assert isinstance(plain, bytes)
    assert plain.decode().replace("\r\n", "\n") == text
    assert all(len(line) <= 998 for line in dump.raw.split(b"\n"))
