"""Pipelining across messages: the next message's commands follow the previous body at once.

Against a server scripted line by line that withholds the final reply until the next
group is in (a client that waited for it would time out), and Slots on its own for the
hand-over's bookkeeping.
"""

from __future__ import annotations

import asyncio

import pytest

from mailroom.transport.base import Outcome, Stage
from mailroom.transport.smtp_slots import Slots
from mailroom.transport.smtp_wire import SmtpConnection
from tests.transport.scripted import (
    ONE,
    Peer,
    ScriptedServer,
    one_message,
    quit_politely,
    transport_for,
)

GROUP = ["MAIL FROM:<sender@example.com>", "RCPT TO:<a@example.com>", "DATA"]


async def first_body_then_next_group(peer: Peer) -> None:
    """One message up to its final dot, then the next one's commands before any reply."""
    await peer.greet("PIPELINING")
    assert await peer.lines(3) == GROUP
    await peer.send("250 Ok", "250 Ok", "354 Go")
    await peer.body()
    assert await peer.lines(3) == GROUP  # sent without waiting for the final reply


async def test_the_next_message_follows_the_body_before_its_final_reply() -> None:
    async def script(peer: Peer) -> None:
        await first_body_then_next_group(peer)
        await peer.send("250 2.0.0 Ok: queued as 1", "250 Ok", "250 Ok", "354 Go")
        await peer.body()
        await peer.send("250 2.0.0 Ok: queued as 2")
        await quit_politely(peer)

    async with ScriptedServer(script) as server:
        transport = transport_for(server, pool_size=1)
        first, second = await asyncio.gather(transport.send(ONE), transport.send(ONE))
        await transport.aclose()
    assert [(r.outcome, r.message) for r in (first, second)] == [
        (Outcome.ACCEPTED, "Ok: queued as 1"),
        (Outcome.ACCEPTED, "Ok: queued as 2"),
    ]
    assert server.connections == 1


async def test_a_refused_message_does_not_stop_the_one_behind_it() -> None:
    async def script(peer: Peer) -> None:
        await first_body_then_next_group(peer)
        await peer.send("554 5.7.1 Spam", "250 Ok", "250 Ok", "354 Go")
        await peer.body()
        await peer.send("250 2.0.0 Ok: queued as 2")
        await quit_politely(peer)

    async with ScriptedServer(script) as server:
        transport = transport_for(server, pool_size=1)
        first, second = await asyncio.gather(transport.send(ONE), transport.send(ONE))
        await transport.aclose()
    assert (first.outcome, first.code) == (Outcome.PERMANENT, 554)
    assert second.outcome is Outcome.ACCEPTED
    assert server.connections == 1


async def test_a_421_to_the_message_ahead_sends_the_next_over_a_new_connection() -> None:
    async def closing(peer: Peer) -> None:
        await first_body_then_next_group(peer)
        await peer.send("421 4.3.2 Shutting down")
        peer.hang_up()

    async with ScriptedServer(closing, one_message) as server:
        transport = transport_for(server, pool_size=1)
        first, second = await asyncio.gather(transport.send(ONE), transport.send(ONE))
        await transport.aclose()
    assert (first.outcome, first.stage, first.code) == (Outcome.TRANSIENT, Stage.DATA, 421)
    # Its commands went out behind the 421 but nothing of it was taken: no failed attempt.
    assert second.outcome is Outcome.ACCEPTED
    assert server.connections == 2


async def test_without_pipelining_nothing_is_sent_ahead() -> None:
    async def script(peer: Peer) -> None:
        await peer.greet()
        for _ in range(2):
            for verb, reply in (("MAIL", "250 Ok"), ("RCPT", "250 Ok"), ("DATA", "354 Go")):
                await peer.expect(verb)
                await peer.send(reply)
            await peer.body()
            await peer.send("250 Ok")
        await quit_politely(peer)

    async with ScriptedServer(script) as server:
        transport = transport_for(server, pool_size=1)
        results = await asyncio.gather(transport.send(ONE), transport.send(ONE))
        await transport.aclose()
    assert {r.outcome for r in results} == {Outcome.ACCEPTED}


async def test_a_message_cancelled_behind_another_leaves_that_one_alone() -> None:
    group_in, cancelled = asyncio.Event(), asyncio.Event()

    async def script(peer: Peer) -> None:
        await first_body_then_next_group(peer)
        group_in.set()
        await cancelled.wait()  # the second send is gone before the first's final reply
        await peer.send("250 2.0.0 Ok: queued as 1", "250 Ok", "250 Ok", "354 Go")
        await peer.closed()  # its replies are owed to no one: the connection is closed

    async with ScriptedServer(script) as server:
        transport = transport_for(server, pool_size=1)
        first = asyncio.create_task(transport.send(ONE))
        second = asyncio.create_task(transport.send(ONE))
        await group_in.wait()
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await second
        cancelled.set()
        result = await first
        assert transport.open_connections == 0
        await transport.aclose()
    assert (result.outcome, result.message) == (Outcome.ACCEPTED, "Ok: queued as 1")


# -- Slots ---------------------------------------------------------------------------------


async def test_places_are_served_in_turn() -> None:
    slots = Slots(1)
    assert await slots.acquire() is None
    waiting = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)  # let it queue
    assert not waiting.done()
    slots.release()
    assert await waiting is None


async def test_a_cancelled_sender_declines_a_hand_over_and_gives_its_place_back() -> None:
    slots = Slots(1)
    assert await slots.acquire() is None
    waiting = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    handoff = slots.hand_over(SmtpConnection(timeout=1))
    assert handoff is not None
    waiting.cancel()  # before it could run with the connection
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert handoff.declined is True
    assert await asyncio.wait_for(slots.acquire(), 1) is None  # the place came back


async def test_no_hand_over_without_a_waiting_sender() -> None:
    slots = Slots(2)
    assert await slots.acquire() is None
    assert slots.hand_over(SmtpConnection(timeout=1)) is None
