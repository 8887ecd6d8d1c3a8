"""The pool: connections reused, replaced when they die (costing no attempt), retired when idle.

Against a server scripted line by line, and Postfix's smtp-sink where it can play the part.
"""

from __future__ import annotations

import asyncio

import pytest

from mailroom.transport.base import Outcome, Stage
from mailroom.transport.smtp import SmtpConfig, SmtpTransport
from tests.support.smtp_sink import smtp_sink
from tests.support.waiting import eventually
from tests.transport.scripted import (
    ONE,
    Peer,
    ScriptedServer,
    accept_pipelined,
    one_message,
    quit_politely,
    transport_for,
)

# -- the server closing after the final dot --------------------------------------------------


async def test_a_421_after_the_final_dot_closes_the_connection() -> None:
    async def first(peer: Peer) -> None:
        await peer.greet("PIPELINING")
        await peer.lines(3)
        await peer.send("250 Ok", "250 Ok", "354 Go")
        await peer.body()
        await peer.send("421 4.3.2 Shutting down")  # and holds the socket open
        await peer.closed()  # the client must hang up, not send the next MAIL here

    async with ScriptedServer(first, one_message) as server:
        # Reusing the dead session would wait this long for a reply that never comes.
        transport = transport_for(server, timeout=30)
        refused = await transport.send(ONE)
        assert transport.open_connections == 0
        accepted = await transport.send(ONE)
        await transport.aclose()
    assert (refused.outcome, refused.stage, refused.code) == (Outcome.TRANSIENT, Stage.DATA, 421)
    assert accepted.outcome is Outcome.ACCEPTED
    assert server.connections == 2


async def test_a_421_after_the_final_dot_from_postfix_closes_the_connection() -> None:
    # smtp-sink -r . answers every final dot with the -b reply and keeps the session.
    async with smtp_sink("-r", ".", "-b", "421 4.3.2 Service shutting down") as sink:
        transport = SmtpTransport(SmtpConfig(host=sink.host, port=sink.port, timeout=30))
        try:
            result = await transport.send(ONE)
            assert transport.open_connections == 0
        finally:
            await transport.aclose()
    assert (result.outcome, result.code, result.enhanced_code) == (
        Outcome.TRANSIENT,
        421,
        "4.3.2",
    )


# -- silently dead and idle connections ---------------------------------------------------------


async def test_a_pooled_connection_gone_silent_costs_no_attempt() -> None:
    async def first(peer: Peer) -> None:
        await peer.greet("PIPELINING")
        await accept_pipelined(peer)
        # A NAT or firewall dropped the flow: no FIN, no RST, and no reply ever again.
        await peer.lines(3)
        await peer.closed()  # the client gives up on it and hangs up

    async with ScriptedServer(first, one_message) as server:
        transport = transport_for(server, timeout=0.5)
        results = [await transport.send(ONE), await transport.send(ONE)]
        await transport.aclose()
    # The second email went out over a new connection within the same attempt.
    assert [r.outcome for r in results] == [Outcome.ACCEPTED, Outcome.ACCEPTED]
    assert server.connections == 2


async def test_a_connection_idle_longer_than_the_limit_is_closed_not_reused() -> None:
    async def first(peer: Peer) -> None:
        await peer.greet("PIPELINING")
        await accept_pipelined(peer)
        await quit_politely(peer)  # unprompted: the client retires it once idle too long

    async with ScriptedServer(first, one_message) as server:
        transport = transport_for(server, idle_seconds=0.2)
        assert (await transport.send(ONE)).outcome is Outcome.ACCEPTED

        async def open_connections() -> int:
            return transport.open_connections

        await eventually(open_connections, lambda n: n == 0, what="the idle connection closed")
        assert (await transport.send(ONE)).outcome is Outcome.ACCEPTED
        await transport.aclose()
    assert server.connections == 2


# -- pooled connections the server closed ------------------------------------------------


@pytest.mark.parametrize("pipelining", [True, False])
async def test_a_421_to_mail_on_a_pooled_connection_reconnects(pipelining: bool) -> None:
    extensions = ("PIPELINING",) if pipelining else ()

    async def first(peer: Peer) -> None:
        await peer.greet(*extensions)
        await transaction(peer)
        # The idle timeout fired just as the client reused the connection.
        await peer.lines(3 if pipelining else 1)
        await peer.send("421 4.4.2 Idle timeout exceeded, closing")

    async def second(peer: Peer) -> None:
        await peer.greet(*extensions)
        await transaction(peer)
        await quit_politely(peer)

    async def transaction(peer: Peer) -> None:
        if pipelining:
            await accept_pipelined(peer)
            return
        for verb, reply in (("MAIL", "250 Ok"), ("RCPT", "250 Ok"), ("DATA", "354 Go")):
            await peer.expect(verb)
            await peer.send(reply)
        await peer.body()
        await peer.send("250 Ok")

    async with ScriptedServer(first, second) as server:
        transport = transport_for(server)
        results = [await transport.send(ONE), await transport.send(ONE)]
        await transport.aclose()
    assert [r.outcome for r in results] == [Outcome.ACCEPTED, Outcome.ACCEPTED]
    assert server.connections == 2


async def test_a_pooled_connection_dropped_without_a_word_reconnects() -> None:
    async def first(peer: Peer) -> None:
        await peer.greet("PIPELINING")
        await accept_pipelined(peer)
        await peer.lines(3)
        peer.hang_up()

    async with ScriptedServer(first, one_message) as server:
        transport = transport_for(server)
        results = [await transport.send(ONE), await transport.send(ONE)]
        await transport.aclose()
    assert [r.outcome for r in results] == [Outcome.ACCEPTED, Outcome.ACCEPTED]


async def test_a_421_to_mail_on_a_new_connection_is_reported_not_retried() -> None:
    async def script(peer: Peer) -> None:
        await peer.greet("PIPELINING")
        await peer.lines(3)
        await peer.send("421 4.7.0 Too many connections from your host")
        await peer.closed()

    async with ScriptedServer(script) as server:
        transport = transport_for(server)
        result = await transport.send(ONE)
    assert (result.outcome, result.stage, result.code) == (Outcome.TRANSIENT, Stage.MAIL, 421)
    assert server.connections == 1


# -- the pool's edges ----------------------------------------------------------------------


async def test_a_cancelled_send_discards_its_connection() -> None:
    body_in = asyncio.Event()

    async def script(peer: Peer) -> None:
        await peer.greet("PIPELINING")
        await peer.lines(3)
        await peer.send("250 Ok", "250 Ok", "354 Go")
        await peer.body()
        body_in.set()
        await peer.closed()  # no final reply: the worker is stopping meanwhile

    async with ScriptedServer(script) as server:
        transport = transport_for(server)
        sending = asyncio.create_task(transport.send(ONE))
        await body_in.wait()
        sending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sending
        assert transport.open_connections == 0


async def test_aclose_says_quit_on_every_idle_connection() -> None:
    async with ScriptedServer(one_message, one_message) as server:
        transport = transport_for(server, pool_size=2)
        results = await asyncio.gather(transport.send(ONE), transport.send(ONE))
        assert transport.open_connections == 2
        await transport.aclose()
        assert transport.open_connections == 0
    assert {r.outcome for r in results} == {Outcome.ACCEPTED}


async def test_aclose_does_not_wait_long_for_a_silent_server() -> None:
    async def script(peer: Peer) -> None:
        await peer.greet("PIPELINING")
        await accept_pipelined(peer)
        await peer.expect("QUIT")
        await peer.closed()  # never says 221

    async with ScriptedServer(script) as server:
        transport = transport_for(server, timeout=0.2)
        assert (await transport.send(ONE)).outcome is Outcome.ACCEPTED
        await transport.aclose()
        assert transport.open_connections == 0
