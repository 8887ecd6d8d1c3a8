"""SMTP servers for the transport tests.

``smtp_server`` is overridden here so that every test using it runs twice: against
aiosmtpd as it is (no PIPELINING advertised, so the client goes command by
command) and against aiosmtpd advertising PIPELINING (aiosmtpd reads commands
from a buffered stream, so it answers a pipelined group correctly).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from mailroom.transport.base import Outcome, SendResult, Stage
from tests.support.smtp_server import ScriptedHandler, SmtpTestServer
from tests.support.tls import PrivateCA, ServerCertificate


@dataclass
class PipeliningHandler(ScriptedHandler):
    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        responses = await super().handle_EHLO(server, session, envelope, hostname, responses)
        return [responses[0], "250-PIPELINING", *responses[1:]]


@dataclass
class RecordingHandler(ScriptedHandler):
    """Also notes, per message, whether it came over TLS and with which MAIL parameters."""

    over_tls: list[bool] = field(default_factory=list)
    mail_options: list[list[str]] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        transport = server.transport
        self.over_tls.append(
            transport is not None and transport.get_extra_info("sslcontext") is not None
        )
        self.mail_options.append(list(envelope.mail_options))
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture(params=["command-by-command", "pipelining"])
async def smtp_server(request: pytest.FixtureRequest) -> AsyncIterator[SmtpTestServer]:
    server = SmtpTestServer()
    if request.param == "pipelining":
        server.handler = PipeliningHandler()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture(scope="session")
def private_ca(tmp_path_factory: pytest.TempPathFactory) -> PrivateCA:
    """A CA of the test's own, like a company's private relay has: trusted by nothing else."""
    return PrivateCA.create(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="session")
def certificate(private_ca: PrivateCA) -> ServerCertificate:
    """A server certificate for 127.0.0.1 signed by ``private_ca``."""
    return private_ca.issue("127.0.0.1")


@asynccontextmanager
async def aiosmtpd_server(
    handler: Any, *, implicit_tls: ssl.SSLContext | None = None, **options: Any
) -> AsyncIterator[asyncio.Server]:
    """aiosmtpd on a free port with any SMTP() ``options`` (TLS, AUTH); yields the server."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="mailroom-test", loop=loop, **options),
        host="127.0.0.1",
        port=0,
        ssl=implicit_tls,
    )
    try:
        yield server
    finally:
        server.close()
        await server.wait_closed()


def port_of(server: asyncio.Server) -> int:
    port: int = server.sockets[0].getsockname()[1]
    return port


def assert_configuration_fault(result: SendResult) -> None:
    """Refused while connecting, for a reason only a change of settings can mend."""
    assert (result.outcome, result.stage, result.config_error) == (
        Outcome.TRANSIENT,
        Stage.CONNECT,
        True,
    ), result.message
