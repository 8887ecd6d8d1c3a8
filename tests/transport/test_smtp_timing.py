"""An attempt's duration is the conversation with the server, not the wait for a connection."""

from __future__ import annotations

import asyncio

from mailroom.transport.base import Envelope, Outcome
from tests.conftest import smtp_transport_for
from tests.support.smtp_server import SmtpTestServer

MESSAGE = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: t\r\n\r\nbody\r\n"


async def test_elapsed_excludes_waiting_for_a_pooled_connection(
    smtp_server: SmtpTestServer,
) -> None:
    smtp_server.handler.data_delay = 0.3
    transport = smtp_transport_for(smtp_server, pool_size=1)
    envelope = Envelope("a@example.com", ("b@example.com",), MESSAGE)
    try:
        first, second = await asyncio.gather(transport.send(envelope), transport.send(envelope))
    finally:
        await transport.aclose()
    assert {first.outcome, second.outcome} == {Outcome.ACCEPTED}
    # The second send waited ~0.3 s for the only connection; that is not part of its attempt.
    for result in (first, second):
        assert result.elapsed is not None
        assert 0.25 <= result.elapsed < 0.59  # with the wait it would be at least 0.6
