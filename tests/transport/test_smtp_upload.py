"""The message upload is timed by its progress, and the final reply by SMTP_DATA_TIMEOUT.

A large message to a slow reader is no timeout as long as it moves; an upload that stops
moving for SMTP_TIMEOUT is abandoned before its final dot left (so retrying is safe);
and the reply to the final dot may take up to SMTP_DATA_TIMEOUT (RFC 5321 §4.5.3.2).
"""

from __future__ import annotations

import asyncio

from mailroom.transport.base import Envelope, Outcome, Stage
from mailroom.transport.smtp import SmtpConfig, SmtpTransport
from tests.support.smtp_sink import smtp_sink
from tests.transport.scripted import ONE, Peer, ScriptedServer, quit_politely, transport_for

END = b"\r\n.\r\n"


def large(size: int) -> Envelope:
    line = b"x" * 998 + b"\r\n"
    body = line * (size // len(line))
    message = b"From: sender@example.com\r\nSubject: large\r\n\r\n" + body
    return Envelope("sender@example.com", ("a@example.com",), message)


async def open_data(peer: Peer) -> None:
    await peer.greet("PIPELINING")
    await peer.lines(3)
    await peer.send("250 Ok", "250 Ok", "354 Go")


async def test_a_large_message_to_a_slow_reader_is_delivered_once() -> None:
    envelope = large(1_500_000)
    received = bytearray()

    async def slow_reader(peer: Peer) -> None:
        await open_data(peer)
        while not received.endswith(END):
            received.extend(await peer.read(64 * 1024))
            await asyncio.sleep(0.1)  # ≈ 640 KB/s: a server reading at its own pace
        await peer.send("250 2.0.0 Ok: queued")
        await quit_politely(peer)

    async with ScriptedServer(slow_reader, receive_buffer=64 * 1024) as server:
        # The upload takes about 2.3 s, each read well within SMTP_TIMEOUT.
        transport = transport_for(server, timeout=1.0)
        result = await transport.send(envelope)
        await transport.aclose()
    assert (result.outcome, result.code) == (Outcome.ACCEPTED, 250)
    assert len(received) > 1_400_000
    assert server.connections == 1


async def test_an_upload_that_stalls_is_abandoned_before_its_final_dot() -> None:
    envelope = large(8_000_000)  # more than the kernel's buffers on both sides hold
    stop_reading, result_in = asyncio.Event(), asyncio.Event()

    async def stops_reading(peer: Peer) -> None:
        await open_data(peer)
        await peer.read(64 * 1024)
        await result_in.wait()  # reads nothing more: the upload stalls
        stop_reading.set()
        while await _read_or_reset(peer):  # the client hung up; drain what is left
            pass

    async with ScriptedServer(stops_reading, receive_buffer=64 * 1024) as server:
        transport = transport_for(server, timeout=0.5, data_timeout=60)
        result = await transport.send(envelope)
        result_in.set()
        await stop_reading.wait()
        assert transport.open_connections == 0
    # The final dot never left Mailroom: the server cannot have the message.
    assert (result.outcome, result.stage, result.code) == (Outcome.TRANSIENT, Stage.DATA, None)
    assert "took none of the message for 0.5 s" in result.message
    assert result.elapsed is not None and result.elapsed < 10


async def test_a_final_reply_slower_than_smtp_timeout_is_waited_for() -> None:
    # smtp-sink -W .:1 answers each final dot a second late: longer than SMTP_TIMEOUT.
    async with smtp_sink("-W", ".:1") as sink:
        transport = SmtpTransport(
            SmtpConfig(host=sink.host, port=sink.port, timeout=0.3, data_timeout=10)
        )
        try:
            result = await transport.send(ONE)
        finally:
            await transport.aclose()
        dumps = sink.dumps()
    assert (result.outcome, result.code) == (Outcome.ACCEPTED, 250)
    assert result.elapsed is not None and result.elapsed >= 0.9
    assert len(dumps) == 1


async def _read_or_reset(peer: Peer) -> bool:
    try:
        return bool(await peer.read(1 << 20))
    except ConnectionError:
        return False
