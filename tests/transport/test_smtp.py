"""SmtpTransport against a real (aiosmtpd) SMTP server."""

from __future__ import annotations

import asyncio
import socket

import pytest

from mailroom.transport.base import Envelope, Outcome, Stage
from mailroom.transport.smtp import SmtpConfig, SmtpTransport
from tests.conftest import smtp_transport_for
from tests.support.smtp_server import DROP, SmtpTestServer


def _envelope(*recipients: str, body: str = "Hello") -> Envelope:
    message = (
        "From: sender@example.com\r\nTo: jane@example.com\r\nSubject: Hi\r\n"
        f"Message-ID: <t@example.com>\r\n\r\n{body}\r\n"
    ).encode()
    return Envelope("sender@example.com", recipients or ("jane@example.com",), message)


async def test_delivers_and_reuses_one_connection(smtp_server: SmtpTestServer) -> None:
    transport = smtp_transport_for(smtp_server)
    try:
        for _ in range(3):
            result = await transport.send(_envelope())
            assert result.outcome is Outcome.ACCEPTED
            assert (result.code, result.enhanced_code, result.message) == (
                250,
                "2.0.0",
                "OK queued",
            )
        assert smtp_server.handler.connections == 1
        assert transport.open_connections == 1
        assert len(smtp_server.handler.messages()) == 3
    finally:
        await transport.aclose()
    assert transport.open_connections == 0


async def test_concurrent_sends_use_at_most_pool_size_connections(
    smtp_server: SmtpTestServer,
) -> None:
    smtp_server.handler.data_delay = 0.01
    transport = smtp_transport_for(smtp_server, pool_size=3)
    try:
        results = await asyncio.gather(*(transport.send(_envelope()) for _ in range(12)))
        assert {r.outcome for r in results} == {Outcome.ACCEPTED}
        assert smtp_server.handler.connections == 3
    finally:
        await transport.aclose()


async def test_a_connection_the_server_closed_while_idle_is_replaced(
    smtp_server: SmtpTestServer,
) -> None:
    smtp_server.handler.close_after_data = True
    transport = smtp_transport_for(smtp_server)
    try:
        assert (await transport.send(_envelope())).outcome is Outcome.ACCEPTED
        await asyncio.sleep(0)  # let the server's hang-up happen (it is scheduled, not guessed)
        assert (await transport.send(_envelope())).outcome is Outcome.ACCEPTED
        assert smtp_server.handler.connections == 2
        assert len(smtp_server.handler.messages()) == 2
    finally:
        await transport.aclose()


@pytest.mark.parametrize(
    ("reply", "outcome"),
    [
        ("451 4.3.0 Temporary failure", Outcome.TRANSIENT),
        ("452 4.3.1 Insufficient storage", Outcome.TRANSIENT),
        ("550 5.7.1 Rejected by policy", Outcome.PERMANENT),
        ("554 5.6.0 Message content rejected", Outcome.PERMANENT),
    ],
)
async def test_a_data_reply_is_classified_and_the_connection_kept(
    smtp_server: SmtpTestServer, reply: str, outcome: Outcome
) -> None:
    smtp_server.handler.data_replies.append(reply)
    transport = smtp_transport_for(smtp_server)
    try:
        result = await transport.send(_envelope())
        code, enhanced, text = reply.split(" ", 2)
        assert result.outcome is outcome
        assert (result.code, result.enhanced_code, result.message) == (int(code), enhanced, text)
        assert result.stage is Stage.DATA
        # The next message goes through on the same connection after RSET.
        assert (await transport.send(_envelope())).outcome is Outcome.ACCEPTED
        assert smtp_server.handler.connections == 1
    finally:
        await transport.aclose()


async def test_a_refused_recipient_is_reported_while_the_others_get_it(
    smtp_server: SmtpTestServer,
) -> None:
    smtp_server.handler.rcpt_replies["bad@example.com"] = "550 5.1.1 No such user"
    transport = smtp_transport_for(smtp_server)
    try:
        result = await transport.send(_envelope("jane@example.com", "bad@example.com"))
    finally:
        await transport.aclose()
    assert result.outcome is Outcome.ACCEPTED
    [refusal] = result.refused
    assert (refusal.recipient, refusal.code, refusal.enhanced_code, refusal.message) == (
        "bad@example.com",
        550,
        "5.1.1",
        "No such user",
    )
    [received] = smtp_server.handler.messages()
    assert received.envelope_to == ("jane@example.com",)


@pytest.mark.parametrize(
    ("replies", "outcome"),
    [
        (("550 5.1.1 No such user", "553 5.1.3 Bad address"), Outcome.PERMANENT),
        (("550 5.1.1 No such user", "450 4.2.1 Mailbox busy"), Outcome.TRANSIENT),
        (("552 5.5.3 Too many recipients", "552 5.5.3 Too many recipients"), Outcome.TRANSIENT),
    ],
)
async def test_all_recipients_refused(
    smtp_server: SmtpTestServer, replies: tuple[str, str], outcome: Outcome
) -> None:
    smtp_server.handler.rcpt_replies.update(
        {"a@example.com": replies[0], "b@example.com": replies[1]}
    )
    transport = smtp_transport_for(smtp_server)
    try:
        result = await transport.send(_envelope("a@example.com", "b@example.com"))
        assert result.outcome is outcome
        assert result.stage is Stage.RCPT
        assert [r.recipient for r in result.refused] == ["a@example.com", "b@example.com"]
        assert result.code == int(replies[0][:3])
        assert smtp_server.handler.messages() == []
        assert (await transport.send(_envelope())).outcome is Outcome.ACCEPTED
    finally:
        await transport.aclose()


async def test_connection_refused_is_transient() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    transport = SmtpTransport(SmtpConfig(host="127.0.0.1", port=port, timeout=2))
    result = await transport.send(_envelope())
    assert result.outcome is Outcome.TRANSIENT
    assert result.stage is Stage.CONNECT
    assert result.code is None
    assert result.message
    assert transport.open_connections == 0


async def test_a_connection_dropped_during_data_is_unknown(smtp_server: SmtpTestServer) -> None:
    smtp_server.handler.data_replies.append(DROP)
    transport = smtp_transport_for(smtp_server)
    try:
        result = await transport.send(_envelope())
        assert result.outcome is Outcome.UNKNOWN
        assert result.stage is Stage.DATA
        assert transport.open_connections == 0
        assert (await transport.send(_envelope())).outcome is Outcome.ACCEPTED
    finally:
        await transport.aclose()


async def test_a_final_reply_slower_than_the_data_timeout_is_unknown(
    smtp_server: SmtpTestServer,
) -> None:
    smtp_server.handler.data_delay = 1.0
    transport = smtp_transport_for(smtp_server, timeout=5, data_timeout=0.2)
    try:
        result = await transport.send(_envelope())
    finally:
        await transport.aclose()
    assert result.outcome is Outcome.UNKNOWN
    assert result.stage is Stage.DATA
    assert "timed out" in result.message.lower()
