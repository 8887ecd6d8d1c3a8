"""AUTH: PLAIN, LOGIN and XOAUTH2 against aiosmtpd over STARTTLS; never in clear text.

The XOAUTH2 tokens come from a real token endpoint (uvicorn) or a real command; the
mailbox behaves as Gmail and Office 365 do with a refused token (a JSON challenge, then
535 after the client's empty answer).
"""

from __future__ import annotations

import asyncio
import base64
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from mailroom.transport.base import Envelope as MailEnvelope
from mailroom.transport.base import Outcome, Stage
from mailroom.transport.oauth2 import ClientCredentials, TokenCommand
from mailroom.transport.smtp import SmtpConfig, SmtpTransport
from tests.support.tls import PrivateCA, ServerCertificate
from tests.support.token_endpoint import token_endpoint
from tests.transport.conftest import (
    RecordingHandler,
    aiosmtpd_server,
    assert_configuration_fault,
    port_of,
)

ENVELOPE = MailEnvelope(
    "mailer@example.com",
    ("jane@example.com",),
    b"From: mailer@example.com\r\nTo: jane@example.com\r\nSubject: Hi\r\n\r\nHello\r\n",
)
USER, SECRET = "mailer@example.com", "s3cret:é"


class Authenticator:
    """Accepts one user and password; remembers the mechanism of each attempt."""

    def __init__(self) -> None:
        self.mechanisms: list[str] = []

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        self.mechanisms.append(mechanism)
        ok = isinstance(data, LoginPassword) and data == (USER.encode(), SECRET.encode())
        return AuthResult(success=ok, handled=False)


class OAuthMailbox(RecordingHandler):
    """XOAUTH2 as Gmail and Office 365 speak it; ``valid`` are the tokens it takes."""

    def __init__(self, *valid: str) -> None:
        super().__init__()
        self.valid = set(valid)
        self.presented: list[tuple[str, str]] = []  # (user, token) per attempt

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        fields = dict(
            part.split("=", 1) for part in base64.b64decode(args[1]).decode().split("\x01") if part
        )
        token = fields["auth"].removeprefix("Bearer ")
        self.presented.append((fields["user"], token))
        if token in self.valid:
            return AuthResult(success=True)
        await server.challenge_auth('{"status":"401","schemes":"bearer"}')
        return AuthResult(success=False, handled=False)  # aiosmtpd then says 535


@pytest.fixture
def starttls(certificate: ServerCertificate) -> dict[str, Any]:
    """aiosmtpd options for STARTTLS, required before AUTH (aiosmtpd's default)."""
    return {"tls_context": certificate.context(), "require_starttls": True}


def config(port: int, private_ca: PrivateCA, **overrides: Any) -> SmtpConfig:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "timeout": 5,
        "security": "starttls",
        "ca_file": str(private_ca.cert_file),
        "username": USER,
    }
    values.update(overrides)
    return SmtpConfig(**values)


async def send(config: SmtpConfig, times: int = 1) -> list[Any]:
    transport = SmtpTransport(config)
    try:
        return [await transport.send(ENVELOPE) for _ in range(times)]
    finally:
        await transport.aclose()


# -- PLAIN and LOGIN --------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_auth_with_the_mechanism_the_server_offers(
    starttls: dict[str, Any], private_ca: PrivateCA, mechanism: str
) -> None:
    authenticator = Authenticator()
    other = {"PLAIN": "LOGIN", "LOGIN": "PLAIN"}[mechanism]
    options = {**starttls, "authenticator": authenticator, "auth_exclude_mechanism": [other]}
    handler = RecordingHandler()
    async with aiosmtpd_server(handler, **options) as server:
        results = await send(config(port_of(server), private_ca, password=SECRET), times=2)
    assert [r.outcome for r in results] == [Outcome.ACCEPTED, Outcome.ACCEPTED]
    assert authenticator.mechanisms == [mechanism]  # once per connection, not per message
    assert handler.over_tls == [True, True]


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_wrong_credentials_are_a_configuration_fault(
    starttls: dict[str, Any], private_ca: PrivateCA, mechanism: str
) -> None:
    other = {"PLAIN": "LOGIN", "LOGIN": "PLAIN"}[mechanism]
    options = {**starttls, "authenticator": Authenticator(), "auth_exclude_mechanism": [other]}
    async with aiosmtpd_server(RecordingHandler(), **options) as server:
        [result] = await send(config(port_of(server), private_ca, password="nope"))
    assert (result.outcome, result.stage, result.code) == (Outcome.TRANSIENT, Stage.CONNECT, 535)
    assert result.config_error is True


async def test_after_a_535_the_next_offered_mechanism_is_tried(
    starttls: dict[str, Any], private_ca: PrivateCA
) -> None:
    class PlainRefused(Authenticator):
        def __call__(
            self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
        ) -> AuthResult:
            if mechanism == "PLAIN":  # as a server with PLAIN switched off for this user
                self.mechanisms.append(mechanism)
                return AuthResult(success=False, handled=False)
            return super().__call__(server, session, envelope, mechanism, data)

    authenticator = PlainRefused()
    options = {**starttls, "authenticator": authenticator}
    async with aiosmtpd_server(RecordingHandler(), **options) as server:
        [result] = await send(config(port_of(server), private_ca, password=SECRET))
    assert result.outcome is Outcome.ACCEPTED
    assert authenticator.mechanisms == ["PLAIN", "LOGIN"]


async def test_a_chosen_mechanism_is_the_only_one_used(
    starttls: dict[str, Any], private_ca: PrivateCA
) -> None:
    authenticator = Authenticator()
    options = {**starttls, "authenticator": authenticator}
    async with aiosmtpd_server(RecordingHandler(), **options) as server:
        port = port_of(server)
        [result] = await send(config(port, private_ca, password=SECRET, auth_mechanism="login"))
    assert result.outcome is Outcome.ACCEPTED
    assert authenticator.mechanisms == ["LOGIN"]


# -- never in clear text ------------------------------------------------------------------


async def test_credentials_never_go_out_unencrypted() -> None:
    authenticator = Authenticator()
    handler = RecordingHandler()
    # A server offering AUTH without TLS, and a client set to SMTP_SECURITY=none.
    options: dict[str, Any] = {"authenticator": authenticator, "auth_require_tls": False}
    async with aiosmtpd_server(handler, **options) as server:
        transport = SmtpTransport(
            SmtpConfig(
                host="127.0.0.1", port=port_of(server), timeout=5, username=USER, password=SECRET
            )
        )
        result = await transport.send(ENVELOPE)
        await transport.aclose()
    assert_configuration_fault(result)
    assert "SMTP_ALLOW_INSECURE_AUTH" in result.message
    assert SECRET not in result.message
    assert authenticator.mechanisms == []  # no AUTH command at all
    assert handler.messages() == []


async def test_credentials_in_clear_text_when_allowed_on_purpose() -> None:
    authenticator = Authenticator()
    options: dict[str, Any] = {"authenticator": authenticator, "auth_require_tls": False}
    async with aiosmtpd_server(RecordingHandler(), **options) as server:
        transport = SmtpTransport(
            SmtpConfig(
                host="127.0.0.1",
                port=port_of(server),
                timeout=5,
                username=USER,
                password=SECRET,
                allow_insecure_auth=True,
            )
        )
        result = await transport.send(ENVELOPE)
        await transport.aclose()
    assert result.outcome is Outcome.ACCEPTED
    assert authenticator.mechanisms == ["PLAIN"]


# -- XOAUTH2 --------------------------------------------------------------------------------


async def test_xoauth2_with_a_token_endpoint_refreshes_once_after_a_535(
    starttls: dict[str, Any], private_ca: PrivateCA
) -> None:
    mailbox = OAuthMailbox("fresh-token")
    with token_endpoint("expired-token", "fresh-token") as endpoint:
        tokens = ClientCredentials(
            endpoint.url, "client-1", "client-secret", "https://outlook.office365.com/.default"
        )
        async with aiosmtpd_server(mailbox, **starttls) as server:
            port = port_of(server)
            cfg = config(port, private_ca, auth_mechanism="xoauth2", oauth2=tokens, pool_size=2)
            transport = SmtpTransport(cfg)
            try:
                first = await transport.send(ENVELOPE)
                # Two at once, so a second connection opens: the cached token, no request.
                both = await asyncio.gather(transport.send(ENVELOPE), transport.send(ENVELOPE))
                results = [first, *both]
            finally:
                await transport.aclose()
    assert [r.outcome for r in results] == [Outcome.ACCEPTED] * 3
    assert mailbox.presented[:2] == [(USER, "expired-token"), (USER, "fresh-token")]
    assert mailbox.presented[2:] == [(USER, "fresh-token")]  # the second connection's
    assert transport.open_connections == 0
    assert len(endpoint.requests) == 2
    assert endpoint.requests[0] == {
        "grant_type": "client_credentials",
        "client_id": "client-1",
        "client_secret": "client-secret",
        "scope": "https://outlook.office365.com/.default",
    }


async def test_xoauth2_refused_twice_is_a_configuration_fault(
    starttls: dict[str, Any], private_ca: PrivateCA
) -> None:
    mailbox = OAuthMailbox()  # takes no token at all
    with token_endpoint() as endpoint:
        tokens = ClientCredentials(endpoint.url, "client-1", "client-secret")
        async with aiosmtpd_server(mailbox, **starttls) as server:
            cfg = config(port_of(server), private_ca, auth_mechanism="xoauth2", oauth2=tokens)
            [result] = await send(cfg)
    assert (result.outcome, result.code, result.config_error) == (Outcome.TRANSIENT, 535, True)
    assert len(mailbox.presented) == 2  # the cached token, then one fresh one
    assert len(endpoint.requests) == 2


async def test_a_refusing_token_endpoint_is_a_configuration_fault(
    starttls: dict[str, Any], private_ca: PrivateCA
) -> None:
    mailbox = OAuthMailbox()
    with token_endpoint() as endpoint:
        endpoint.failure = (401, {"error": "invalid_client", "error_description": "Bad secret"})
        tokens = ClientCredentials(endpoint.url, "client-1", "wrong-secret")
        async with aiosmtpd_server(mailbox, **starttls) as server:
            cfg = config(port_of(server), private_ca, auth_mechanism="xoauth2", oauth2=tokens)
            [result] = await send(cfg)
    assert_configuration_fault(result)
    assert "401" in result.message and "invalid_client" in result.message
    assert "wrong-secret" not in result.message
    assert mailbox.presented == []


async def test_xoauth2_with_a_token_command(
    starttls: dict[str, Any], private_ca: PrivateCA, tmp_path: Path
) -> None:
    script = tmp_path / "print_token.py"
    script.write_text("print('token-from-a-command')\n")
    command = f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}"
    mailbox = OAuthMailbox("token-from-a-command")
    async with aiosmtpd_server(mailbox, **starttls) as server:
        cfg = config(
            port_of(server), private_ca, auth_mechanism="xoauth2", oauth2=TokenCommand(command)
        )
        [result] = await send(cfg)
    assert result.outcome is Outcome.ACCEPTED
    assert mailbox.presented == [(USER, "token-from-a-command")]


async def test_auto_prefers_xoauth2_and_falls_back_to_the_password(
    starttls: dict[str, Any], private_ca: PrivateCA
) -> None:
    # Office 365 lists LOGIN and XOAUTH2; here it refuses every token, and the password
    # (an account where basic authentication is still on) gets the mail through.
    authenticator = Authenticator()
    mailbox = OAuthMailbox()
    options = {**starttls, "authenticator": authenticator, "auth_exclude_mechanism": ["PLAIN"]}
    with token_endpoint() as endpoint:
        tokens = ClientCredentials(endpoint.url, "client-1", "client-secret")
        async with aiosmtpd_server(mailbox, **options) as server:
            cfg = config(port_of(server), private_ca, password=SECRET, oauth2=tokens)
            [result] = await send(cfg)
    assert result.outcome is Outcome.ACCEPTED
    assert len(mailbox.presented) == 2  # XOAUTH2 first, refreshed once
    assert authenticator.mechanisms == ["LOGIN"]
