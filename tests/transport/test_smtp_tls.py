"""STARTTLS and implicit TLS against aiosmtpd with a certificate from the test's own CA.

Certificate and host name checks stay on, with the CA given as SMTP_CA_FILE; a wrong
security mode for the port says what to change instead of timing out in silence.
"""

from __future__ import annotations

from typing import Any

import pytest

from mailroom.transport.base import Envelope as MailEnvelope
from mailroom.transport.base import Outcome, SendResult, Stage
from mailroom.transport.smtp import SmtpConfig, SmtpTransport
from mailroom.transport.smtp_connect import no_greeting_fault
from tests.support.tls import PrivateCA, ServerCertificate
from tests.transport.conftest import (
    RecordingHandler,
    aiosmtpd_server,
    assert_configuration_fault,
    port_of,
)
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


async def send_twice(config: SmtpConfig) -> list[Outcome]:
    transport = SmtpTransport(config)
    try:
        return [(await transport.send(ENVELOPE)).outcome for _ in range(2)]
    finally:
        await transport.aclose()


async def send_once(port: int, **overrides: Any) -> SendResult:
    transport = SmtpTransport(config(port, **overrides))
    try:
        return await transport.send(ENVELOPE)
    finally:
        await transport.aclose()


def server_options(security: str, context: Any) -> dict[str, Any]:
    if security == "tls":
        return {"implicit_tls": context}
    return {"tls_context": context, "require_starttls": True}


async def _refused_certificate(context: Any, security: str, **overrides: Any) -> SendResult:
    """One send to a server presenting ``context``'s certificate, which the client must
    refuse before it says a word of mail, and close: the result."""
    handler = RecordingHandler()
    async with aiosmtpd_server(handler, **server_options(security, context)) as server:
        transport = SmtpTransport(config(port_of(server), security=security, **overrides))
        result = await transport.send(ENVELOPE)
        assert transport.open_connections == 0
    assert handler.messages() == []
    return result


# -- a private CA ----------------------------------------------------------------------


async def test_starttls_with_a_private_ca(
    certificate: ServerCertificate, private_ca: PrivateCA
) -> None:
    handler = RecordingHandler()
    options = server_options("starttls", certificate.context())
    async with aiosmtpd_server(handler, **options) as server:
        ca = str(private_ca.cert_file)
        outcomes = await send_twice(config(port_of(server), security="starttls", ca_file=ca))
    assert outcomes == [Outcome.ACCEPTED, Outcome.ACCEPTED]
    assert handler.over_tls == [True, True]
    # EHLO before STARTTLS and again after it, on one connection.
    assert handler.connections == 2


async def test_implicit_tls_with_a_private_ca(
    certificate: ServerCertificate, private_ca: PrivateCA
) -> None:
    handler = RecordingHandler()
    async with aiosmtpd_server(handler, implicit_tls=certificate.context()) as server:
        ca = str(private_ca.cert_file)
        outcomes = await send_twice(config(port_of(server), security="tls", ca_file=ca))
    assert outcomes == [Outcome.ACCEPTED, Outcome.ACCEPTED]
    assert handler.over_tls == [True, True]


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_a_certificate_from_a_ca_not_given_is_refused(
    certificate: ServerCertificate, security: str
) -> None:
    result = await _refused_certificate(certificate.context(), security)
    assert (result.outcome, result.stage, result.code) == (Outcome.TRANSIENT, Stage.CONNECT, None)
    assert result.config_error is True
    assert "certificate" in result.message
    assert "SMTP_CA_FILE" in result.message


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_the_host_name_is_still_checked_with_a_private_ca(
    private_ca: PrivateCA, security: str
) -> None:
    elsewhere = private_ca.issue("smtp.elsewhere.example")
    ca = str(private_ca.cert_file)
    result = await _refused_certificate(elsewhere.context(), security, ca_file=ca)
    assert (result.outcome, result.config_error) == (Outcome.TRANSIENT, True)
    assert "IP address mismatch" in result.message
    assert "SMTP_HOST must be a name the certificate is for" in result.message


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_verify_cert_off_accepts_any_certificate(
    certificate: ServerCertificate, security: str
) -> None:
    handler = RecordingHandler()
    async with aiosmtpd_server(handler, **server_options(security, certificate.context())) as s:
        outcomes = await send_twice(config(port_of(s), security=security, verify_cert=False))
    assert outcomes == [Outcome.ACCEPTED, Outcome.ACCEPTED]
    assert handler.over_tls == [True, True]


# -- STARTTLS refused, missing or faked ---------------------------------------------------


async def test_starttls_required_but_not_offered_is_a_configuration_fault() -> None:
    async def script(peer: Peer) -> None:
        await peer.greet("PIPELINING")
        await peer.closed()  # nothing is sent in clear text after all

    async with ScriptedServer(script) as server:
        result = await send_once(server.port, security="starttls")
    assert_configuration_fault(result)
    assert "STARTTLS" in result.message


async def test_a_temporarily_refused_starttls_is_transient() -> None:
    async def script(peer: Peer) -> None:
        await peer.greet("STARTTLS")
        await peer.expect("STARTTLS")
        await peer.send("454 4.7.0 TLS not available due to temporary reason")
        await peer.closed()

    async with ScriptedServer(script) as server:
        result = await send_once(server.port, security="starttls")
    assert (result.outcome, result.stage, result.code) == (Outcome.TRANSIENT, Stage.CONNECT, 454)
    assert result.config_error is False


async def test_starttls_answered_250_is_no_tls_and_nothing_more_is_said() -> None:
    async def script(peer: Peer) -> None:
        await peer.greet("STARTTLS", "PIPELINING")
        await peer.expect("STARTTLS")
        await peer.send("250 2.0.0 Ok")  # where 220 "ready to start TLS" was due
        await peer.closed()  # no MAIL, no AUTH: not one more byte in clear text

    async with ScriptedServer(script) as server:
        result = await send_once(server.port, security="starttls")
    assert (result.outcome, result.stage, result.code) == (Outcome.TRANSIENT, Stage.CONNECT, 250)
    assert result.config_error is True
    assert "STARTTLS" in result.message and "220" in result.message


# -- the wrong security mode for the port ------------------------------------------------


async def test_tls_against_a_starttls_port_says_to_use_starttls(
    certificate: ServerCertificate, private_ca: PrivateCA
) -> None:
    handler = RecordingHandler()
    options = server_options("starttls", certificate.context())
    async with aiosmtpd_server(handler, **options) as server:
        ca = str(private_ca.cert_file)
        result = await send_once(port_of(server), security="tls", ca_file=ca)
    assert_configuration_fault(result)
    assert "SMTP_SECURITY=starttls" in result.message
    assert handler.messages() == []


@pytest.mark.parametrize("security", ["starttls", "none"])
async def test_plain_text_against_an_implicit_tls_port_says_to_use_tls(
    certificate: ServerCertificate, security: str
) -> None:
    handler = RecordingHandler()
    async with aiosmtpd_server(handler, implicit_tls=certificate.context()) as server:
        # The TLS server waits for a ClientHello, the client for a greeting: a timeout.
        result = await send_once(port_of(server), security=security, timeout=0.5)
    assert (result.outcome, result.stage) == (Outcome.TRANSIENT, Stage.CONNECT)
    assert "no greeting" in result.message
    assert "SMTP_SECURITY=tls" in result.message


def test_no_greeting_on_port_465_is_a_configuration_fault() -> None:
    where = SmtpConfig(host="smtp.example.com", port=465, security="starttls")
    result = no_greeting_fault(where, TimeoutError("timed out after 30 s"))
    assert_configuration_fault(result)
    assert result.message.endswith(
        "port 465 expects TLS from the first byte: set SMTP_SECURITY=tls"
    )


def test_no_greeting_elsewhere_may_be_a_slow_server() -> None:
    where = SmtpConfig(host="smtp.example.com", port=2525, security="starttls")
    result = no_greeting_fault(where, TimeoutError("timed out after 30 s"))
    assert result.config_error is False
    assert "usually 465" in result.message
