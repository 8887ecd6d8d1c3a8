"""Attachments delivered end to end: API → PostgreSQL → BullMQ → worker → SMTP server.

The aiosmtpd test server records what arrives; each received message is parsed as a
recipient would (email.message_from_bytes, policy.default) and every attachment's
decoded bytes are compared with what was sent to POST /send.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from mailroom.settings import Settings
from mailroom.transport.memory import MemoryTransport
from tests.conftest import running_worker
from tests.support.api_calls import email_detail, send_email
from tests.support.factories import attachment_json, awkward_bytes, png_bytes
from tests.support.smtp_server import ScriptedHandler, SmtpTestServer
from tests.support.waiting import eventually

pytestmark = pytest.mark.usefixtures("clean")

BINARY = awkward_bytes(300 * 1024, seed=2026)
LOGO = png_bytes()
PDF = b"%PDF-1.4\n" + awkward_bytes(4096, seed=7) + b"\n%%EOF\n"
TEXT = "Your files are attached.\n.A line that starts with a dot\n.\nThe end."
HTML = '<p>Your files are attached.</p><img src="cid:logo" alt="Acme">'


def _email(**changes: Any) -> dict[str, Any]:
    return {
        "to": "Jane Doe <jane@example.com>",
        "subject": "Your files",
        "text": TEXT,
        "html": HTML,
        "attachments": [
            attachment_json("data.bin", BINARY),
            attachment_json("logo.png", LOGO, contentId="logo"),
            attachment_json("report.pdf", PDF),
        ],
        **changes,
    }


@dataclass
class RecordingHandler(ScriptedHandler):
    """A ScriptedHandler that also keeps the content of every DATA, answered 2xx or not."""

    every_data: list[bytes] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content or b""
        self.every_data.append(content if isinstance(content, bytes) else content.encode())
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
async def recording_server() -> AsyncIterator[SmtpTestServer]:
    server = SmtpTestServer()
    server.handler = RecordingHandler()
    await server.start()
    yield server
    await server.stop()


def _parse(raw: bytes) -> EmailMessage:
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def _tree(part: EmailMessage) -> Any:
    if part.is_multipart():
        return (
            part.get_content_type(),
            [_tree(p) for p in part.iter_parts() if isinstance(p, EmailMessage)],
        )
    return part.get_content_type()


def _files(message: EmailMessage) -> dict[str, EmailMessage]:
    """Every leaf part that has a filename, by filename."""
    parts = [p for p in message.walk() if isinstance(p, EmailMessage) and not p.is_multipart()]
    named = {p.get_filename(): p for p in parts if p.get_filename()}
    assert len(named) == sum(1 for p in parts if p.get_filename()), "two parts share a filename"
    return {str(name): part for name, part in named.items()}


def _payload(part: EmailMessage) -> bytes:
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes), f"{part.get_content_type()} has no decodable payload"
    return payload


def _final(body: dict[str, Any]) -> bool:
    return body["status"] in ("sent", "failed")


def _assert_the_files_arrived_intact(message: EmailMessage) -> None:
    assert _tree(message) == (
        "multipart/mixed",
        [
            (
                "multipart/alternative",
                ["text/plain", ("multipart/related", ["text/html", "image/png"])],
            ),
            "application/octet-stream",
            "application/pdf",
        ],
    )
    files = _files(message)
    assert set(files) == {"data.bin", "logo.png", "report.pdf"}

    data = files["data.bin"]
    assert data.get_content_type() == "application/octet-stream"
    assert data.get_content_disposition() == "attachment"
    assert "Content-ID" not in data
    assert _payload(data) == BINARY

    logo = files["logo.png"]
    assert logo.get_content_type() == "image/png"
    assert logo.get_content_disposition() == "inline"
    assert logo["Content-ID"] == "<logo>"
    assert _payload(logo) == LOGO

    report = files["report.pdf"]
    assert report.get_content_type() == "application/pdf"
    assert report.get_content_disposition() == "attachment"
    assert _payload(report) == PDF

    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert isinstance(text, EmailMessage) and isinstance(html, EmailMessage)
    assert text.get_content().replace("\r\n", "\n").rstrip("\n") == TEXT
    assert html.get_content().replace("\r\n", "\n").rstrip("\n") == HTML


# -- delivered intact ------------------------------------------------------------------------------


async def test_attachments_arrive_byte_for_byte_with_names_types_and_the_inline_image(
    client: httpx.AsyncClient, settings: Settings, smtp_server: SmtpTestServer
) -> None:
    async with running_worker(settings, smtp_server):
        accepted = await send_email(client, _email())
        email = await eventually(
            lambda: email_detail(client, accepted["id"]), _final, what="delivery"
        )

    assert email["status"] == "sent", email
    assert email["attempts"] == 1
    assert [a["filename"] for a in email["attachments"]] == ["data.bin", "logo.png", "report.pdf"]
    [received] = smtp_server.handler.messages()
    assert received.envelope_to == ("jane@example.com",)
    message = _parse(received.raw)
    assert message["Message-ID"] == accepted["messageId"]
    assert message["Subject"] == "Your files"
    _assert_the_files_arrived_intact(message)
    # The wire carries every file base64-encoded: 7-bit lines whatever the bytes.
    assert received.raw.isascii()


async def test_a_retry_sends_the_same_bytes_and_message_id_again(
    client: httpx.AsyncClient, settings: Settings, recording_server: SmtpTestServer
) -> None:
    handler = recording_server.handler
    assert isinstance(handler, RecordingHandler)
    handler.data_replies.append("451 4.3.0 Try again later")
    async with running_worker(settings, recording_server):
        accepted = await send_email(client, _email())
        email = await eventually(
            lambda: email_detail(client, accepted["id"]), _final, timeout=30, what="the retry"
        )

    assert email["status"] == "sent", email
    outcomes = [(a["number"], a["outcome"], a["code"]) for a in email["deliveryAttempts"]]
    assert outcomes == [(1, "transient", 451), (2, "accepted", 250)]
    assert len(handler.every_data) == 2
    deferred, delivered = (_parse(raw) for raw in handler.every_data)
    for message in (deferred, delivered):
        assert message["Message-ID"] == accepted["messageId"]
        _assert_the_files_arrived_intact(message)
    assert deferred["Date"] == delivered["Date"]
    first, second = _files(deferred), _files(delivered)
    assert {n: _payload(p) for n, p in first.items()} == {n: _payload(p) for n, p in second.items()}
    [received] = handler.messages()
    assert received.raw == handler.every_data[1]


async def test_each_email_of_a_batch_carries_its_own_attachments(
    client: httpx.AsyncClient, settings: Settings, smtp_server: SmtpTestServer
) -> None:
    contents = {n: awkward_bytes(20_000 + n, seed=n) for n in range(4)}
    emails = [
        {
            "to": f"r{n}@example.com",
            "subject": f"Batch {n}",
            "text": f"Email {n}",
            "attachments": [attachment_json(f"file-{n}.bin", contents[n])] if n != 2 else [],
        }
        for n in range(4)
    ]
    async with running_worker(settings, smtp_server):
        response = await client.post("/send/batch", json={"emails": emails})
        assert response.status_code == 202, response.text
        ids = [item["id"] for item in response.json()["data"]]

        async def statuses() -> list[str]:
            return [(await email_detail(client, i))["status"] for i in ids]

        await eventually(statuses, lambda s: all(x in ("sent", "failed") for x in s), what="batch")

    assert await statuses() == ["sent"] * 4
    received = {m.parsed()["Subject"]: m for m in smtp_server.handler.messages()}
    assert set(received) == {f"Batch {n}" for n in range(4)}
    for n in range(4):
        message = _parse(received[f"Batch {n}"].raw)
        files = _files(message)
        if n == 2:
            assert files == {} and _tree(message) == "text/plain"
        else:
            assert list(files) == [f"file-{n}.bin"]
            assert _payload(files[f"file-{n}.bin"]) == contents[n]


async def test_an_inline_image_of_a_text_only_email_arrives_as_a_file_with_its_content_id(
    client: httpx.AsyncClient, settings: Settings, smtp_server: SmtpTestServer
) -> None:
    body = {
        "to": "jane@example.com",
        "subject": "No HTML",
        "text": "Plain only",
        "attachments": [attachment_json("logo.png", LOGO, contentId="<logo>")],
    }
    async with running_worker(settings, smtp_server):
        accepted = await send_email(client, body)
        email = await eventually(
            lambda: email_detail(client, accepted["id"]), _final, what="delivery"
        )
    assert email["status"] == "sent", email
    [received] = smtp_server.handler.messages()
    message = _parse(received.raw)
    assert _tree(message) == ("multipart/mixed", ["text/plain", "image/png"])
    logo = _files(message)["logo.png"]
    assert logo["Content-ID"] == "<logo>"
    assert logo.get_content_disposition() == "attachment"
    assert _payload(logo) == LOGO


async def test_sanitised_filenames_are_what_the_recipient_sees(
    client: httpx.AsyncClient, settings: Settings, smtp_server: SmtpTestServer
) -> None:
    body = {
        "to": "jane@example.com",
        "subject": "Names",
        "text": "Files",
        "attachments": [
            attachment_json("../../etc/passwd", b"root"),
            attachment_json("C:\\temp\\x.pdf", PDF),
            attachment_json("in\x07voice\r\n.txt", b"invoice"),
            attachment_json("r\u00e9sum\u00e9 " + "\u00e9" * 60 + ".pdf", PDF),
        ],
    }
    async with running_worker(settings, smtp_server):
        accepted = await send_email(client, body)
        email = await eventually(
            lambda: email_detail(client, accepted["id"]), _final, what="delivery"
        )
    assert email["status"] == "sent", email
    [received] = smtp_server.handler.messages()
    files = _files(_parse(received.raw))
    long_name = "r\u00e9sum\u00e9 " + "\u00e9" * 60 + ".pdf"
    assert list(files) == ["passwd", "x.pdf", "invoice.txt", long_name]
    assert _payload(files["passwd"]) == b"root"
    assert files["passwd"].get_content_type() == "application/octet-stream"
    assert files["x.pdf"].get_content_type() == "application/pdf"
    assert files["invoice.txt"].get_content_type() == "text/plain"
    assert _payload(files[long_name]) == PDF


async def test_an_encoded_word_filename_is_refused_and_nothing_is_sent(
    client: httpx.AsyncClient, settings: Settings, smtp_server: SmtpTestServer
) -> None:
    body = {
        "to": "jane@example.com",
        "subject": "Encoded",
        "text": "Files",
        "attachments": [
            attachment_json("=?utf-8?q?..=2F..=2Fetc=2Fpasswd?=", b"root"),
            attachment_json("=?utf-8?q?a=0D=0AX-Injected:=20yes?=.pdf", PDF),
        ],
    }
    response = await client.post("/send", json=body)
    assert response.status_code == 422, response.text
    fields = [d["field"] for d in response.json()["error"]["details"]]
    assert fields == ["attachments[0].filename", "attachments[1].filename"]
    assert smtp_server.handler.messages() == []


# -- sandbox and scheduled -------------------------------------------------------------------------


async def test_a_sandbox_email_with_attachments_is_built_logged_sent_and_never_delivered(
    client: httpx.AsyncClient, settings: Settings, smtp_server: SmtpTestServer
) -> None:
    sandbox = MemoryTransport()  # as `mailroom dev` passes its inbox
    async with running_worker(settings, smtp_server, sandbox_transport=sandbox):
        accepted = await send_email(client, _email(), headers={"X-Sandbox": "true"})
        email = await eventually(
            lambda: email_detail(client, accepted["id"]), _final, what="sandbox"
        )

    assert (email["status"], email["sandbox"], email["attempts"]) == ("sent", True, 1)
    assert [a["filename"] for a in email["attachments"]] == ["data.bin", "logo.png", "report.pdf"]
    assert smtp_server.handler.messages() == []
    assert smtp_server.handler.transactions == 0
    [envelope] = sandbox.delivered
    message = _parse(envelope.message)
    assert message["Message-ID"] == accepted["messageId"]
    _assert_the_files_arrived_intact(message)


async def test_a_scheduled_email_keeps_its_attachments_until_it_is_due_and_sends_them(
    client: httpx.AsyncClient, settings: Settings, smtp_server: SmtpTestServer
) -> None:
    send_at = datetime.now(UTC) + timedelta(seconds=4)
    accepted = await send_email(client, _email(sendAt=send_at.isoformat()))
    assert accepted["status"] == "scheduled"
    # No worker yet: it stays scheduled, its files stored and listed.
    scheduled = await email_detail(client, accepted["id"])
    assert scheduled["status"] == "scheduled"
    assert datetime.fromisoformat(scheduled["sendAt"]) == send_at
    assert [(a["filename"], a["size"]) for a in scheduled["attachments"]] == [
        ("data.bin", len(BINARY)),
        ("logo.png", len(LOGO)),
        ("report.pdf", len(PDF)),
    ]

    async with running_worker(settings, smtp_server):
        email = await eventually(
            lambda: email_detail(client, accepted["id"]),
            _final,
            timeout=30,
            what="the scheduled send",
        )

    assert email["status"] == "sent", email
    # Not before it was due (less the slack a claim allows for BullMQ's timing).
    assert datetime.fromisoformat(email["sentAt"]) >= send_at - timedelta(seconds=2)
    [received] = smtp_server.handler.messages()
    message = _parse(received.raw)
    assert message["Message-ID"] == accepted["messageId"]
    _assert_the_files_arrived_intact(message)


async def test_the_base64_sent_to_the_api_decodes_to_what_the_recipient_gets(
    client: httpx.AsyncClient, settings: Settings, smtp_server: SmtpTestServer
) -> None:
    """The same check from the client's side: its own base64 string against the received part."""
    given = _email()["attachments"][0]["content"]
    async with running_worker(settings, smtp_server):
        accepted = await send_email(client, _email(html=None))
        await eventually(lambda: email_detail(client, accepted["id"]), _final, what="delivery")
    [received] = smtp_server.handler.messages()
    part = _files(_parse(received.raw))["data.bin"]
    assert base64.b64encode(_payload(part)).decode() == given
