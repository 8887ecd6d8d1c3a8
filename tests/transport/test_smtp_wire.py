"""Message framing (line endings, dot-stuffing) and EHLO parsing."""

from __future__ import annotations

from email import policy
from email.message import EmailMessage

import pytest

from mailroom.transport.base import Envelope, Outcome
from mailroom.transport.smtp import SmtpConfig, SmtpTransport
from mailroom.transport.smtp_wire import frame_message, parse_extensions
from tests.conftest import smtp_transport_for
from tests.support.smtp_server import SmtpTestServer
from tests.transport.conftest import RecordingHandler, aiosmtpd_server, port_of


@pytest.mark.parametrize(
    ("message", "framed"),
    [
        (b"a\r\nb\r\n", b"a\r\nb\r\n.\r\n"),
        (b"a\r\n.b\r\n", b"a\r\n..b\r\n.\r\n"),
        (b"a\r\n.\r\nb\r\n", b"a\r\n..\r\nb\r\n.\r\n"),  # a lone dot must not end it early
        (b".first\r\n..second\r\n", b"..first\r\n...second\r\n.\r\n"),
        (b"no final newline", b"no final newline\r\n.\r\n"),
        (b"a\nb\n.c\n", b"a\r\nb\r\n..c\r\n.\r\n"),  # bare LF
        (b"a\rb\r\n", b"a\r\nb\r\n.\r\n"),  # bare CR
        (b"a\r\n\r\n", b"a\r\n\r\n.\r\n"),
        (b"ends in a dot\r\n.", b"ends in a dot\r\n..\r\n.\r\n"),
        (b"", b"\r\n.\r\n"),
    ],
)
def test_frame_message(message: bytes, framed: bytes) -> None:
    assert frame_message(message) == framed


def test_a_built_message_is_already_crlf_and_passes_unchanged() -> None:
    message = EmailMessage(policy=policy.SMTP)
    message["Subject"] = "Ünïcode subject"
    message.set_content("Line one\n.dot line\nLast, with ü\n")
    raw = message.as_bytes()
    assert raw.count(b"\n") == raw.count(b"\r\n")
    assert frame_message(raw) == raw.replace(b"\r\n.", b"\r\n..") + b".\r\n"


def test_parse_extensions() -> None:
    reply = (
        "mail.example.com Hello\nPIPELINING\n8bitmime\nAUTH LOGIN PLAIN\nAUTH=CRAM-MD5\nSIZE 1000"
    )
    assert parse_extensions(reply) == {
        "PIPELINING": "",
        "8BITMIME": "",
        "AUTH": "LOGIN PLAIN CRAM-MD5",
        "SIZE": "1000",
    }


async def test_lines_starting_with_a_dot_arrive_intact(smtp_server: SmtpTestServer) -> None:
    body = b"Hello\r\n.\r\n.leading dot\r\n..two dots\r\n\r\n.\r\nEnd"
    message = b"From: sender@example.com\r\nSubject: dots\r\n\r\n" + body
    transport = smtp_transport_for(smtp_server)
    try:
        envelope = Envelope("sender@example.com", ("jane@example.com",), message)
        first = await transport.send(envelope)
        # The connection is still in step: the next message goes through on it.
        second = await transport.send(envelope)
    finally:
        await transport.aclose()
    assert {first.outcome, second.outcome} == {Outcome.ACCEPTED}
    received = [m.raw for m in smtp_server.handler.messages()]
    # aiosmtpd strips the dot-stuffing and keeps the CRLF that ends the last line.
    assert received == [message + b"\r\n", message + b"\r\n"]
    assert smtp_server.handler.connections == 1


async def test_an_8_bit_message_arrives_intact_declared_as_8bitmime() -> None:
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = "sender@example.com"
    message["Subject"] = "Grüße"
    message.set_content("Grüße aus Köln\n.Punkt am Zeilenanfang\n")
    raw = message.as_bytes()
    assert not raw.isascii()  # policy.SMTP writes such a body as 8bit (build_message does not)
    handler = RecordingHandler()
    async with aiosmtpd_server(handler) as server:
        transport = SmtpTransport(SmtpConfig(host="127.0.0.1", port=port_of(server), timeout=5))
        try:
            plain = await transport.send(Envelope("sender@example.com", ("j@example.com",), b"Hi"))
            result = await transport.send(Envelope("sender@example.com", ("j@example.com",), raw))
        finally:
            await transport.aclose()
    assert {plain.outcome, result.outcome} == {Outcome.ACCEPTED}
    # aiosmtpd offers SIZE, so every MAIL says how large its message is.
    assert handler.mail_options == [["SIZE=4"], [f"SIZE={len(raw)}", "BODY=8BITMIME"]]
    assert raw in [m.raw for m in handler.messages()]  # the inbox lists newest first
