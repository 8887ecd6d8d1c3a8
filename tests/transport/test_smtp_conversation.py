"""SmtpTransport's side of the conversation, against a server scripted line by line."""

from __future__ import annotations

import pytest

from mailroom.transport.base import Envelope, Outcome, Stage
from tests.transport.scripted import (
    MESSAGE,
    ONE,
    TWO,
    Peer,
    ScriptedServer,
    accept_pipelined,
    quit_politely,
    transport_for,
)

# -- pipelining ------------------------------------------------------------------------


async def test_the_envelope_goes_out_as_one_pipelined_group() -> None:
    async def script(peer: Peer) -> None:
        await peer.greet("PIPELINING", "8BITMIME")
        # Every reply is withheld until the whole group is in: a client waiting for the
        # MAIL reply before sending RCPT would time out here.
        assert await peer.lines(4) == [
            "MAIL FROM:<sender@example.com>",
            "RCPT TO:<a@example.com>",
            "RCPT TO:<b@example.com>",
            "DATA",
        ]
        await peer.send("250 2.1.0 Ok", "250 2.1.5 Ok", "550 5.1.1 No such user", "354 Go")
        assert await peer.body() == MESSAGE
        await peer.send("250 2.0.0 Ok: queued as 1")
        assert await peer.lines(3) == [
            "MAIL FROM:<sender@example.com>",
            "RCPT TO:<a@example.com>",
            "DATA",
        ]
        await peer.send("250 2.1.0 Ok", "250 2.1.5 Ok", "354 Go")
        await peer.body()
        await peer.send("250 2.0.0 Ok: queued as 2")
        await quit_politely(peer)

    async with ScriptedServer(script) as server:
        transport = transport_for(server)
        first = await transport.send(TWO)
        second = await transport.send(ONE)
        await transport.aclose()
    assert (first.outcome, first.code, first.enhanced_code, first.message) == (
        Outcome.ACCEPTED,
        250,
        "2.0.0",
        "Ok: queued as 1",
    )
    [refused] = first.refused
    assert (refused.recipient, refused.code, refused.message) == (
        "b@example.com",
        550,
        "No such user",
    )
    assert second.outcome is Outcome.ACCEPTED
    assert server.connections == 1


async def test_a_refused_mail_in_a_group_reads_the_owed_replies_then_resets() -> None:
    async def script(peer: Peer) -> None:
        await peer.greet("PIPELINING")
        await peer.lines(3)
        await peer.send("550 5.7.1 Sender rejected", "503 5.5.1 Need MAIL", "503 5.5.1 Need RCPT")
        await peer.expect("RSET")
        await peer.send("250 2.0.0 Ok")
        await accept_pipelined(peer)
        await quit_politely(peer)

    async with ScriptedServer(script) as server:
        transport = transport_for(server)
        refused = await transport.send(ONE)
        accepted = await transport.send(ONE)
        await transport.aclose()
    assert (refused.outcome, refused.stage, refused.code, refused.message) == (
        Outcome.PERMANENT,
        Stage.MAIL,
        550,
        "Sender rejected",
    )
    assert accepted.outcome is Outcome.ACCEPTED
    assert server.connections == 1


@pytest.mark.parametrize(
    "data_reply",
    ["554 5.5.1 No valid recipients", "503 5.5.1 Need RCPT", "354 Go ahead"],
)
async def test_every_recipient_refused_in_a_group(data_reply: str) -> None:
    async def script(peer: Peer) -> None:
        await peer.greet("PIPELINING")
        await peer.lines(4)
        await peer.send("250 Ok", "550 5.1.1 No such user", "450 4.2.1 Mailbox busy", data_reply)
        if data_reply.startswith("354"):
            # The server opened DATA anyway: a lone dot ends it with no content.
            assert await peer.line() == "."
            await peer.send("554 5.5.1 No valid recipients")
        await peer.expect("RSET")
        await peer.send("250 2.0.0 Ok")
        await accept_pipelined(peer)
        await quit_politely(peer)

    async with ScriptedServer(script) as server:
        transport = transport_for(server)
        refused = await transport.send(TWO)
        accepted = await transport.send(ONE)
        await transport.aclose()
    assert (refused.outcome, refused.stage, refused.code) == (Outcome.TRANSIENT, Stage.RCPT, 550)
    assert [r.recipient for r in refused.refused] == ["a@example.com", "b@example.com"]
    assert accepted.outcome is Outcome.ACCEPTED
    assert server.connections == 1


async def test_a_refused_data_command_in_a_group_is_at_data_and_resets() -> None:
    async def script(peer: Peer) -> None:
        await peer.greet("PIPELINING")
        await peer.lines(3)
        await peer.send("250 2.1.0 Ok", "250 2.1.5 Ok", "451 4.3.0 Try again in 30 seconds")
        await peer.expect("RSET")
        await peer.send("250 2.0.0 Ok")
        await quit_politely(peer)

    async with ScriptedServer(script) as server:
        transport = transport_for(server)
        result = await transport.send(ONE)
        await transport.aclose()
    assert (result.outcome, result.stage, result.code, result.retry_after) == (
        Outcome.TRANSIENT,
        Stage.DATA,
        451,
        30.0,
    )


# -- command by command ----------------------------------------------------------------


async def test_without_pipelining_nothing_follows_a_refused_mail() -> None:
    async def script(peer: Peer) -> None:
        await peer.greet()
        await peer.expect("MAIL FROM:")
        await peer.send("451 4.7.1 Greylisted")
        await peer.expect("RSET")  # not RCPT: the client waited for the MAIL reply
        await peer.send("250 2.0.0 Ok")
        await peer.expect("MAIL FROM:")
        await peer.send("250 2.1.0 Ok")
        await peer.expect("RCPT TO:<a@example.com>")
        await peer.send("550 5.1.1 No such user")
        await peer.expect("RCPT TO:<b@example.com>")
        await peer.send("550 5.1.1 No such user")
        await peer.expect("RSET")  # not DATA: no recipient was accepted
        await peer.send("250 2.0.0 Ok")
        await quit_politely(peer)

    async with ScriptedServer(script) as server:
        transport = transport_for(server)
        greylisted = await transport.send(ONE)
        refused = await transport.send(TWO)
        await transport.aclose()
    assert (greylisted.outcome, greylisted.stage, greylisted.code) == (
        Outcome.TRANSIENT,
        Stage.MAIL,
        451,
    )
    assert (refused.outcome, refused.stage) == (Outcome.PERMANENT, Stage.RCPT)


async def test_a_server_that_refuses_ehlo_gets_helo() -> None:
    async def script(peer: Peer) -> None:
        await peer.send("220 old.example.com SMTP")
        await peer.expect("EHLO")
        await peer.send("502 5.5.2 Command not recognized")
        await peer.expect("HELO")
        await peer.send("250 old.example.com")
        await peer.expect("MAIL FROM:<sender@example.com>")  # no BODY=: no extensions known
        await peer.send("250 Ok")
        await peer.expect("RCPT TO:")
        await peer.send("250 Ok")
        await peer.expect("DATA")
        await peer.send("354 Go")
        await peer.body()
        await peer.send("250 Ok")
        await quit_politely(peer)

    async with ScriptedServer(script) as server:
        transport = transport_for(server)
        result = await transport.send(ONE)
        await transport.aclose()
    assert result.outcome is Outcome.ACCEPTED


async def test_body_8bitmime_is_declared_only_for_8_bit_content() -> None:
    async def script(peer: Peer) -> None:
        await peer.greet("PIPELINING", "8BITMIME")
        [mail, _, _] = await peer.lines(3)
        assert mail == "MAIL FROM:<sender@example.com>"  # plain ASCII: no parameter
        await peer.send("250 Ok", "250 Ok", "354 Go")
        await peer.body()
        await peer.send("250 Ok")
        [mail, _, _] = await peer.lines(3)
        assert mail == "MAIL FROM:<sender@example.com> BODY=8BITMIME"
        await peer.send("250 Ok", "250 Ok", "354 Go")
        assert await peer.body() == "Subject: Hi\r\n\r\nGrüße\r\n".encode()
        await peer.send("250 Ok")
        await quit_politely(peer)

    async with ScriptedServer(script) as server:
        transport = transport_for(server)
        plain = await transport.send(ONE)
        message = "Subject: Hi\r\n\r\nGrüße\r\n".encode()
        eight_bit = Envelope("sender@example.com", ("a@example.com",), message)
        accented = await transport.send(eight_bit)
        await transport.aclose()
    assert {plain.outcome, accented.outcome} == {Outcome.ACCEPTED}


# -- faults and the ambiguity rule ---------------------------------------------------------


async def test_a_421_greeting_is_transient_at_connect() -> None:
    async def script(peer: Peer) -> None:
        await peer.send("421 4.3.2 Service not available, closing channel")
        await peer.closed()

    async with ScriptedServer(script) as server:
        transport = transport_for(server)
        result = await transport.send(ONE)
        assert transport.open_connections == 0
    assert (result.outcome, result.stage, result.code, result.enhanced_code) == (
        Outcome.TRANSIENT,
        Stage.CONNECT,
        421,
        "4.3.2",
    )
    # "Too many connections" is the server shedding load: not a configuration error.
    assert result.config_error is False


async def test_a_hang_up_after_the_final_dot_is_unknown() -> None:
    async def script(peer: Peer) -> None:
        await peer.greet("PIPELINING")
        await peer.lines(3)
        await peer.send("250 Ok", "250 Ok", "354 Go")
        await peer.body()
        peer.hang_up()  # the message may or may not have been queued

    async with ScriptedServer(script) as server:
        transport = transport_for(server)
        result = await transport.send(ONE)
        assert transport.open_connections == 0
    assert (result.outcome, result.stage, result.code) == (Outcome.UNKNOWN, Stage.DATA, None)
    assert result.message


async def test_a_hang_up_before_354_is_transient_the_body_never_left() -> None:
    async def script(peer: Peer) -> None:
        await peer.greet("PIPELINING")
        await peer.lines(3)
        await peer.send("250 Ok", "250 Ok")
        peer.hang_up()

    async with ScriptedServer(script) as server:
        transport = transport_for(server)
        result = await transport.send(ONE)
        assert transport.open_connections == 0
    assert (result.outcome, result.stage, result.code) == (Outcome.TRANSIENT, Stage.DATA, None)


async def test_a_silent_server_times_out_transiently_before_data() -> None:
    async def script(peer: Peer) -> None:
        await peer.greet()
        await peer.expect("MAIL FROM:")
        await peer.closed()  # never answers; the client gives up and hangs up

    async with ScriptedServer(script) as server:
        transport = transport_for(server, timeout=0.2)
        result = await transport.send(ONE)
        assert transport.open_connections == 0
    assert (result.outcome, result.stage) == (Outcome.TRANSIENT, Stage.MAIL)
    assert "timed out" in result.message


async def test_a_line_that_is_not_a_reply_ends_the_connection() -> None:
    async def script(peer: Peer) -> None:
        await peer.greet()
        await peer.expect("MAIL FROM:")
        await peer.send("Hello? Is this HTTP?")
        await peer.closed()

    async with ScriptedServer(script) as server:
        transport = transport_for(server)
        result = await transport.send(ONE)
        assert transport.open_connections == 0
    assert (result.outcome, result.stage, result.code) == (Outcome.TRANSIENT, Stage.MAIL, None)
    assert "not an SMTP reply" in result.message


async def test_a_multiline_final_reply_is_read_whole() -> None:
    async def script(peer: Peer) -> None:
        await peer.greet("PIPELINING")
        await peer.lines(3)
        await peer.send("250 Ok", "250 Ok", "354 Go")
        await peer.body()
        await peer.send("250-2.0.0 Ok", "250 queued as ABC123")
        await quit_politely(peer)

    async with ScriptedServer(script) as server:
        transport = transport_for(server)
        result = await transport.send(ONE)
        await transport.aclose()
    assert (result.code, result.enhanced_code, result.message) == (
        250,
        "2.0.0",
        "Ok\nqueued as ABC123",
    )


async def test_a_421_to_rcpt_ends_the_transaction_without_waiting_for_more() -> None:
    async def script(peer: Peer) -> None:
        await peer.greet("PIPELINING")
        await peer.lines(4)
        await peer.send("250 Ok", "421 4.3.2 Shutting down")  # and nothing more
        await peer.closed()

    async with ScriptedServer(script) as server:
        transport = transport_for(server, timeout=30)  # a wait for more replies would show
        result = await transport.send(TWO)
        assert transport.open_connections == 0
    assert (result.outcome, result.stage, result.code) == (Outcome.TRANSIENT, Stage.RCPT, 421)


# -- what never reaches the wire ----------------------------------------------------------


async def test_an_address_that_would_inject_a_command_is_refused_unsent() -> None:
    async with ScriptedServer() as server:
        transport = transport_for(server)
        sneaky = Envelope("sender@example.com", ("a@example.com>\r\nRCPT TO:<b@x.com",), b"Hi\r\n")
        result = await transport.send(sneaky)
        assert transport.open_connections == 0
    assert result.outcome is Outcome.PERMANENT
    assert server.connections == 0
