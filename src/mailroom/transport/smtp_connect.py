"""Opening an SMTP connection: greeting, EHLO (or HELO), STARTTLS, AUTH.

What ``SmtpTransport`` pools are connections this has made ready for MAIL; a reason it
could not (a refusal, a certificate, no common AUTH mechanism) is a ``SendResult`` at
the CONNECT stage.
"""

from __future__ import annotations

import asyncio
import base64
import re
import socket
import ssl
from dataclasses import dataclass

from mailroom.transport.base import Outcome, SendResult, Stage
from mailroom.transport.replies import reply_result
from mailroom.transport.smtp_transaction import CLOSING, FAULTS
from mailroom.transport.smtp_wire import SmtpConnection, parse_extensions

_HOSTNAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+$")


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    security: str = "none"  # none | starttls | tls
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0
    pool_size: int = 10
    validate_certs: bool = True


class Connector:
    """Makes connections ready for MAIL; keeps the TLS context and the EHLO name it found."""

    def __init__(self, config: SmtpConfig) -> None:
        self._config = config
        self._tls: ssl.SSLContext | None = None
        self._local_name: bytes | None = None

    async def connect(self, connection: SmtpConnection) -> SendResult | None:
        """Connect and make ready for MAIL (greeted, TLS, EHLO, AUTH); None, or why not.

        The caller closes the connection when this returns a reason or raises.
        """
        config = self._config
        loop = asyncio.get_running_loop()
        try:
            tls = await self._tls_context() if config.security != "none" else None
            implicit = tls if config.security == "tls" else None
            async with asyncio.timeout(config.timeout):
                await loop.create_connection(
                    lambda: connection,
                    config.host,
                    config.port,
                    ssl=implicit,
                    server_hostname=config.host if implicit else None,
                    ssl_handshake_timeout=config.timeout if implicit else None,
                )
            code, text = await connection.reply()
            if code == 220:
                failed = await self._hello(connection)
            else:
                failed = reply_result(code, text, Stage.CONNECT)
            if failed is None and tls is not None and config.security == "starttls":
                failed = await self._start_tls(connection, tls)
            if failed is None and config.username is not None and config.password is not None:
                failed = await self._authenticate(connection, config.username, config.password)
        except ssl.SSLCertVerificationError as exc:
            return _connect_fault(str(exc), config_error=True)
        except FAULTS as exc:
            return _connect_fault(str(exc) or type(exc).__name__)
        return failed

    async def _hello(self, connection: SmtpConnection) -> SendResult | None:
        name = self._local_name or await self._hostname(connection)
        connection.write(b"EHLO " + name + b"\r\n")
        code, text = await connection.reply()
        if 200 <= code < 300:
            connection.extensions = parse_extensions(text)
            return None
        if code == CLOSING:
            return reply_result(code, text, Stage.CONNECT)
        # An RFC 821 server: plain HELO, and no extensions (so no pipelining).
        connection.write(b"HELO " + name + b"\r\n")
        code, text = await connection.reply()
        if 200 <= code < 300:
            connection.extensions = {}
            return None
        return reply_result(code, text, Stage.CONNECT)

    async def _start_tls(
        self, connection: SmtpConnection, tls: ssl.SSLContext
    ) -> SendResult | None:
        if "STARTTLS" not in connection.extensions:
            return _connect_fault(
                "SMTP_SECURITY is starttls but the server does not offer STARTTLS",
                config_error=True,
            )
        connection.write(b"STARTTLS\r\n")
        code, text = await connection.reply()
        if code != 220:
            return reply_result(code, text, Stage.CONNECT)
        await connection.start_tls(tls, self._config.host)
        # What the server offered in clear text may have been tampered with: ask again.
        return await self._hello(connection)

    async def _authenticate(
        self, connection: SmtpConnection, username: str, password: str
    ) -> SendResult | None:
        mechanisms = connection.extensions.get("AUTH", "").upper().split()
        user, secret = username.encode(), password.encode()
        if "PLAIN" in mechanisms:
            token = base64.b64encode(b"\0" + user + b"\0" + secret)
            connection.write(b"AUTH PLAIN " + token + b"\r\n")
            code, text = await connection.reply()
        elif "LOGIN" in mechanisms:
            connection.write(b"AUTH LOGIN\r\n")
            code, text = await connection.reply()
            for answer in (user, secret):
                if code != 334:
                    break
                connection.write(base64.b64encode(answer) + b"\r\n")
                code, text = await connection.reply()
        else:
            offered = " ".join(mechanisms) or "none"
            return _connect_fault(
                f"the server offers no AUTH mechanism Mailroom supports (PLAIN, LOGIN); "
                f"offered: {offered}",
                config_error=True,
            )
        if code != 235:
            return reply_result(code, text, Stage.CONNECT)
        return None

    async def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            # Loading the CA bundle reads files: keep it off the event loop, once.
            self._tls = await asyncio.to_thread(_tls_context, self._config.validate_certs)
        return self._tls

    async def _hostname(self, connection: SmtpConnection) -> bytes:
        """The name for EHLO: our FQDN if it is one, else an address literal (RFC 5321 §4.1.4)."""
        fqdn = await asyncio.to_thread(socket.getfqdn)
        if _HOSTNAME.match(fqdn):
            name = fqdn.encode("ascii")
        else:
            transport = connection.transport
            local = transport.get_extra_info("sockname") if transport is not None else None
            address = str(local[0]) if isinstance(local, tuple) and local else "127.0.0.1"
            name = (f"[IPv6:{address}]" if ":" in address else f"[{address}]").encode()
        self._local_name = name
        return name


def _connect_fault(message: str, *, config_error: bool = False) -> SendResult:
    return SendResult(
        outcome=Outcome.TRANSIENT,
        code=None,
        message=message,
        stage=Stage.CONNECT,
        config_error=config_error,
    )


def _tls_context(validate: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if not validate:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
