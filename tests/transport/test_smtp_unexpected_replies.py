"""A 2xx where another reply was due is no acceptance: only the final dot's 2xx is.

A 250 greeting, a 250 to AUTH (Postfix's smtp-sink answers AUTH so) or a 250 to DATA
means the server took nothing; the attempt is transient and nothing more is sent.
"""

from __future__ import annotations

import pytest

from mailroom.transport.base import Outcome, Stage
from mailroom.transport.smtp import SmtpConfig, SmtpTransport
from tests.support.smtp_sink import smtp_sink
from tests.transport.scripted import ONE, Peer, ScriptedServer, transport_for


async def test_a_250_greeting_is_no_greeting() -> None:
    async def script(peer: Peer) -> None:
        await peer.send("250 mail.example.com ready")  # where 220 was due
        await peer.closed()  # no EHLO, no MAIL

    async with ScriptedServer(script) as server:
        transport = transport_for(server)
        result = await transport.send(ONE)
        assert transport.open_connections == 0
    assert (result.outcome, result.stage, result.code) == (Outcome.TRANSIENT, Stage.CONNECT, 250)
    assert "220" in result.message


@pytest.mark.parametrize("pipelining", [True, False])
async def test_a_250_to_data_is_not_acceptance(pipelining: bool) -> None:
    async def script(peer: Peer) -> None:
        if pipelining:
            await peer.greet("PIPELINING")
            await peer.lines(3)
            await peer.send("250 Ok", "250 Ok", "250 2.0.0 Ok: queued as 1")  # not 354
        else:
            await peer.greet()
            for verb in ("MAIL", "RCPT"):
                await peer.expect(verb)
                await peer.send("250 Ok")
            await peer.expect("DATA")
            await peer.send("250 2.0.0 Ok: queued as 1")
        await peer.closed()  # no body: the server never asked for it

    async with ScriptedServer(script) as server:
        transport = transport_for(server)
        result = await transport.send(ONE)
        assert transport.open_connections == 0
    assert (result.outcome, result.stage, result.code) == (Outcome.TRANSIENT, Stage.DATA, 250)
    assert result.message.startswith("the server answered DATA with 250 where 354 was due")


async def test_a_250_to_auth_from_postfix_smtp_sink_is_no_login() -> None:
    async with smtp_sink() as sink:  # offers AUTH PLAIN LOGIN and answers 250 to AUTH
        transport = SmtpTransport(
            SmtpConfig(
                host=sink.host,
                port=sink.port,
                timeout=5,
                username="mailer",
                password="s3cret",
                allow_insecure_auth=True,
            )
        )
        try:
            result = await transport.send(ONE)
        finally:
            await transport.aclose()
        dumps = sink.dumps()
    assert (result.outcome, result.stage, result.code) == (Outcome.TRANSIENT, Stage.CONNECT, 250)
    assert result.config_error is True
    assert "AUTH PLAIN" in result.message and "235" in result.message
    assert "s3cret" not in result.message
    assert dumps == []  # not one MAIL command
