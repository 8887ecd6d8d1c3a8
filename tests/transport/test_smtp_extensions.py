"""What the server offers in EHLO, used: SIZE, 8BITMIME, SMTPUTF8; and the EHLO name itself.

What a server cannot take (too large, UTF-8 addresses without SMTPUTF8, 8-bit content
without 8BITMIME) fails permanently before MAIL, and the connection stays usable.
"""

from __future__ import annotations

import pytest

from mailroom.transport.base import Envelope, Outcome, Stage
from mailroom.transport.smtp import SmtpConfig, SmtpTransport
from tests.support.smtp_sink import smtp_sink
from tests.transport.conftest import RecordingHandler, aiosmtpd_server, port_of
from tests.transport.scripted import ONE, Peer, ScriptedServer, quit_politely, transport_for


def sized(size: int) -> Envelope:
    """A message of exactly ``size`` octets, in lines of 80."""
    message = b"From: sender@example.com\r\nSubject: sized\r\n\r\n"
    line = b"x" * 78 + b"\r\n"
    message += line * ((size - len(message)) // len(line))
    message += b"y" * (size - len(message) - 2) + b"\r\n"
    assert len(message) == size
    return Envelope("sender@example.com", ("a@example.com",), message)


# -- SIZE (RFC 1870) --------------------------------------------------------------------


async def test_size_is_declared_when_offered() -> None:
    handler = RecordingHandler()
    async with aiosmtpd_server(handler, data_size_limit=100_000) as server:
        transport = SmtpTransport(SmtpConfig(host="127.0.0.1", port=port_of(server), timeout=5))
        try:
            result = await transport.send(sized(50_000))
        finally:
            await transport.aclose()
    assert result.outcome is Outcome.ACCEPTED
    assert handler.mail_options == [["SIZE=50000"]]


async def test_a_message_over_the_servers_size_fails_before_it_is_sent() -> None:
    handler = RecordingHandler()
    async with aiosmtpd_server(handler, data_size_limit=100_000) as server:
        transport = SmtpTransport(SmtpConfig(host="127.0.0.1", port=port_of(server), timeout=5))
        try:
            too_large = await transport.send(sized(200_000))
            fits = await transport.send(ONE)  # the same connection, still in step
        finally:
            await transport.aclose()
    assert (too_large.outcome, too_large.stage, too_large.code) == (
        Outcome.PERMANENT,
        Stage.MAIL,
        None,
    )
    assert too_large.enhanced_code == "5.3.4"
    assert too_large.message == (
        "message_too_large: the message is 200,000 bytes; the server accepts at most "
        "100,000 (its SIZE)"
    )
    assert fits.outcome is Outcome.ACCEPTED
    assert handler.connections == 1
    assert len(handler.mail_options) == 1  # no MAIL (let alone the body) for the large one


async def test_size_from_a_scripted_server_without_a_number_is_no_limit() -> None:
    async def script(peer: Peer) -> None:
        await peer.greet("SIZE")
        mail = await peer.expect("MAIL FROM:")
        assert mail.endswith(" SIZE=30000")
        for reply in ("250 Ok", "250 Ok", "354 Go"):
            await peer.send(reply)
            if reply != "354 Go":
                await peer.line()
        await peer.body()
        await peer.send("250 Ok")
        await quit_politely(peer)

    async with ScriptedServer(script) as server:
        transport = transport_for(server)
        result = await transport.send(sized(30_000))
        await transport.aclose()
    assert result.outcome is Outcome.ACCEPTED


# -- SMTPUTF8 (RFC 6531) ----------------------------------------------------------------


INTERNATIONAL = Envelope(
    "mailer@example.com",
    ("jöhn@example.com",),
    "From: mailer@example.com\r\nTo: jöhn@example.com\r\nSubject: Hi\r\n\r\nHello\r\n".encode(),
)


async def test_an_international_address_is_sent_with_smtputf8_when_offered() -> None:
    handler = RecordingHandler()
    async with aiosmtpd_server(handler, enable_SMTPUTF8=True) as server:
        transport = SmtpTransport(SmtpConfig(host="127.0.0.1", port=port_of(server), timeout=5))
        try:
            result = await transport.send(INTERNATIONAL)
        finally:
            await transport.aclose()
    assert result.outcome is Outcome.ACCEPTED
    assert "SMTPUTF8" in handler.mail_options[0]
    [received] = handler.messages()
    assert received.envelope_to == ("jöhn@example.com",)


async def test_without_smtputf8_an_international_address_fails_for_good() -> None:
    async with smtp_sink() as sink:  # Postfix's sink offers no SMTPUTF8
        transport = SmtpTransport(SmtpConfig(host=sink.host, port=sink.port, timeout=5))
        try:
            refused = await transport.send(INTERNATIONAL)
            plain = await transport.send(ONE)
            assert transport.open_connections == 1
        finally:
            await transport.aclose()
        dumps = sink.dumps()
    assert (refused.outcome, refused.stage, refused.code, refused.enhanced_code) == (
        Outcome.PERMANENT,
        Stage.MAIL,
        None,
        "5.6.7",
    )
    assert refused.message == (
        "smtputf8_not_supported: the address 'jöhn@example.com' needs SMTPUTF8 (RFC 6531), "
        "which the server does not offer"
    )
    assert plain.outcome is Outcome.ACCEPTED
    assert len(dumps) == 1  # only the plain one


# -- 8BITMIME (RFC 6152) ----------------------------------------------------------------


async def test_8_bit_content_is_never_sent_to_a_server_without_8bitmime() -> None:
    eight_bit = Envelope(
        "sender@example.com", ("a@example.com",), "Subject: x\r\n\r\nGrüße\r\n".encode()
    )
    async with smtp_sink("-8") as sink:
        transport = SmtpTransport(SmtpConfig(host=sink.host, port=sink.port, timeout=5))
        try:
            result = await transport.send(eight_bit)
        finally:
            await transport.aclose()
        dumps = sink.dumps()
    assert (result.outcome, result.stage, result.enhanced_code) == (
        Outcome.PERMANENT,
        Stage.MAIL,
        "5.6.3",
    )
    assert result.message.startswith("8bitmime_not_supported: ")
    assert dumps == []


# -- the greeting and EHLO --------------------------------------------------------------------


async def test_the_ehlo_name_can_be_set() -> None:
    async with smtp_sink() as sink:
        config = SmtpConfig(host=sink.host, port=sink.port, timeout=5, ehlo_name="mx.example.org")
        transport = SmtpTransport(config)
        try:
            result = await transport.send(ONE)
        finally:
            await transport.aclose()
        [dump] = sink.dumps()
    assert result.outcome is Outcome.ACCEPTED
    assert dump.helo == "mx.example.org"


@pytest.mark.parametrize("command", ["CONNECT", "EHLO"])
async def test_a_421_while_connecting_is_load_not_a_configuration_error(command: str) -> None:
    # smtp-sink -Q: a 421 and a hang-up, as a server with too many connections does.
    async with smtp_sink("-Q", command) as sink:
        transport = SmtpTransport(SmtpConfig(host=sink.host, port=sink.port, timeout=5))
        result = await transport.send(ONE)
        assert transport.open_connections == 0
    assert (result.outcome, result.stage, result.code) == (Outcome.TRANSIENT, Stage.CONNECT, 421)
    assert result.config_error is False
