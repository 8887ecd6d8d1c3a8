"""STARTTLS, implicit TLS and AUTH against aiosmtpd."""

from __future__ import annotations

from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from mailroom.transport.base import Envelope as MailEnvelope
from mailroom.transport.base import Outcome, Stage
from mailroom.transport.smtp import SmtpConfig, SmtpTransport
from tests.transport.conftest import Certificate, RecordingHandler, aiosmtpd_server, port_of
from tests.transport.scripted import Peer, ScriptedServer

ENVELOPE = MailEnvelope(
    "sender@example.com",
    ("jane@example.com",),
    b"From: sender@example.com\r\nTo: jane@example.com\r\nSubject: Hi\r\n\r\nHello\r\n",
)


def config(port: int, **overrides: Any) -> SmtpConfig:
    values: dict[str, Any] = {"host": "127.0.0.1", "port": port, "timeout": 5}
    values.update(overrides)
    return SmtpConfig(**values)


class Authenticator:
    """Accepts one user; remembers the mechanism each attempt used."""

    def __init__(self) -> None:
        self.mechanisms: list[str] = []

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        self.mechanisms.append(mechanism)
        ok = isinstance(data, LoginPassword) and data == (b"mailroom", "s3cret:é".encode())
        return AuthResult(success=ok, handled=False)


# -- TLS -------------------------------------------------------------------------------


async def test_starttls_with_a_self_signed_certificate(certificate: Certificate) -> None:
    handler = RecordingHandler()
    options: dict[str, Any] = {
        "tls_context": certificate.server_context(),
        "require_starttls": True,
    }
    async with aiosmtpd_server(handler, **options) as server:
        transport = SmtpTransport(
            config(port_of(server), security="starttls", validate_certs=False)
        )
        try:
            results = [await transport.send(ENVELOPE), await transport.send(ENVELOPE)]
        finally:
            await transport.aclose()
    assert [r.outcome for r in results] == [Outcome.ACCEPTED, Outcome.ACCEPTED]
    assert handler.over_tls == [True, True]
    # EHLO before STARTTLS and again after it, on one connection.
    assert handler.connections == 2
    assert len(handler.messages()) == 2


async def test_implicit_tls(certificate: Certificate) -> None:
    handler = RecordingHandler()
    async with aiosmtpd_server(handler, implicit_tls=certificate.server_context()) as server:
        transport = SmtpTransport(config(port_of(server), security="tls", validate_certs=False))
        try:
            result = await transport.send(ENVELOPE)
        finally:
            await transport.aclose()
    assert result.outcome is Outcome.ACCEPTED
    assert handler.over_tls == [True]


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_an_untrusted_certificate_is_a_configuration_fault(
    certificate: Certificate, security: str
) -> None:
    handler = RecordingHandler()
    context = certificate.server_context()
    options: dict[str, Any] = (
        {"tls_context": context} if security == "starttls" else {"implicit_tls": context}
    )
    async with aiosmtpd_server(handler, **options) as server:
        transport = SmtpTransport(config(port_of(server), security=security))
        result = await transport.send(ENVELOPE)
        assert transport.open_connections == 0
    assert (result.outcome, result.stage, result.code) == (Outcome.TRANSIENT, Stage.CONNECT, None)
    assert result.config_error is True
    assert "certificate" in result.message.lower()
    assert handler.messages() == []


async def test_starttls_required_but_not_offered_is_a_configuration_fault() -> None:
    async def script(peer: Peer) -> None:
        await peer.greet("PIPELINING")
        await peer.closed()  # nothing is sent in clear text after all

    async with ScriptedServer(script) as server:
        transport = SmtpTransport(config(server.port, security="starttls"))
        result = await transport.send(ENVELOPE)
    assert (result.outcome, result.stage, result.config_error) == (
        Outcome.TRANSIENT,
        Stage.CONNECT,
        True,
    )
    assert "STARTTLS" in result.message


async def test_a_refused_starttls_is_a_reply_at_connect() -> None:
    async def script(peer: Peer) -> None:
        await peer.greet("STARTTLS")
        await peer.expect("STARTTLS")
        await peer.send("454 4.7.0 TLS not available due to temporary reason")
        await peer.closed()

    async with ScriptedServer(script) as server:
        transport = SmtpTransport(config(server.port, security="starttls"))
        result = await transport.send(ENVELOPE)
    assert (result.outcome, result.stage, result.code) == (Outcome.TRANSIENT, Stage.CONNECT, 454)


# -- AUTH -------------------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_auth_with_the_mechanism_the_server_offers(mechanism: str) -> None:
    handler = RecordingHandler()
    authenticator = Authenticator()
    other = {"PLAIN": "LOGIN", "LOGIN": "PLAIN"}[mechanism]
    options: dict[str, Any] = {
        "authenticator": authenticator,
        "auth_require_tls": False,
        "auth_exclude_mechanism": [other],
    }
    async with aiosmtpd_server(handler, **options) as server:
        transport = SmtpTransport(config(port_of(server), username="mailroom", password="s3cret:é"))
        try:
            results = [await transport.send(ENVELOPE), await transport.send(ENVELOPE)]
        finally:
            await transport.aclose()
    assert [r.outcome for r in results] == [Outcome.ACCEPTED, Outcome.ACCEPTED]
    assert authenticator.mechanisms == [mechanism]  # once per connection, not per message


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_wrong_credentials_are_a_configuration_fault(mechanism: str) -> None:
    other = {"PLAIN": "LOGIN", "LOGIN": "PLAIN"}[mechanism]
    options: dict[str, Any] = {
        "authenticator": Authenticator(),
        "auth_require_tls": False,
        "auth_exclude_mechanism": [other],
    }
    async with aiosmtpd_server(RecordingHandler(), **options) as server:
        transport = SmtpTransport(config(port_of(server), username="mailroom", password="nope"))
        result = await transport.send(ENVELOPE)
        assert transport.open_connections == 0
    assert (result.outcome, result.stage, result.code) == (Outcome.TRANSIENT, Stage.CONNECT, 535)
    assert result.config_error is True


async def test_credentials_for_a_server_offering_no_usable_mechanism() -> None:
    async def script(peer: Peer) -> None:
        await peer.greet("AUTH CRAM-MD5 XOAUTH2")
        await peer.closed()

    async with ScriptedServer(script) as server:
        transport = SmtpTransport(config(server.port, username="u", password="p"))
        result = await transport.send(ENVELOPE)
    assert (result.outcome, result.stage, result.config_error) == (
        Outcome.TRANSIENT,
        Stage.CONNECT,
        True,
    )
    assert "CRAM-MD5" in result.message


async def test_an_old_style_auth_keyword_is_understood() -> None:
    async def script(peer: Peer) -> None:
        await peer.greet("AUTH=LOGIN")
        await peer.expect("AUTH LOGIN")
        await peer.send("334 VXNlcm5hbWU6")
        assert await peer.line() == "dQ=="  # "u"
        await peer.send("334 UGFzc3dvcmQ6")
        assert await peer.line() == "cA=="  # "p"
        await peer.send("235 2.7.0 Authentication successful")
        await peer.expect("MAIL FROM:")
        await peer.send("250 Ok")
        await peer.expect("RCPT TO:")
        await peer.send("250 Ok")
        await peer.expect("DATA")
        await peer.send("354 Go")
        await peer.body()
        await peer.send("250 Ok")
        await peer.expect("QUIT")
        await peer.send("221 Bye")

    async with ScriptedServer(script) as server:
        transport = SmtpTransport(config(server.port, username="u", password="p"))
        result = await transport.send(ENVELOPE)
        await transport.aclose()
    assert result.outcome is Outcome.ACCEPTED
