"""Opening an SMTP connection: TCP, implicit TLS, greeting, EHLO (or HELO), STARTTLS, AUTH.

What ``SmtpTransport`` pools are connections this has made ready for MAIL; a reason it
could not is a ``SendResult`` at the CONNECT stage. Only failures of authentication and
of TLS (an untrusted certificate, STARTTLS missing, the wrong security mode for the
port) are ``config_error``: a 421 greeting is the server shedding load, not a setting.
Each step expects its own reply (220, 250, 220, 235); anything else stops there.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl

from mailroom.transport.base import SendResult, Stage
from mailroom.transport.replies import reply_result, unexpected_reply
from mailroom.transport.smtp_auth import Authenticator, connect_fault
from mailroom.transport.smtp_config import SmtpConfig
from mailroom.transport.smtp_transaction import CLOSING, FAULTS
from mailroom.transport.smtp_wire import ConnectionLost, SmtpConnection, parse_extensions

__all__ = ["Connector", "SmtpConfig", "tls_context"]

_HOSTNAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+$")
_IMPLICIT_TLS_PORT = 465
_TLS_FAULTS = (ssl.SSLError, ConnectionLost, TimeoutError, OSError)
# OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH and X509_V_ERR_IP_ADDRESS_MISMATCH.
_NAME_MISMATCH = frozenset({62, 64})


class Connector:
    """Makes connections ready for MAIL; keeps the TLS context and the EHLO name it found."""

    def __init__(self, config: SmtpConfig) -> None:
        self._config = config
        self._tls: ssl.SSLContext | None = None
        self._local_name = config.ehlo_name.encode("ascii") if config.ehlo_name else None
        self._auth = Authenticator(config) if config.has_credentials else None

    async def connect(self, connection: SmtpConnection) -> SendResult | None:
        """Connect and make ready for MAIL (TLS, greeted, EHLO, AUTH); None, or why not.

        The caller closes the connection when this returns a reason or raises.
        """
        config = self._config
        where = f"{config.host}:{config.port}"
        try:
            tls = await self._tls_context() if config.security != "none" else None
        except (OSError, ssl.SSLError) as exc:
            return connect_fault(f"SMTP_CA_FILE could not be loaded: {exc}", config_error=True)
        try:
            async with asyncio.timeout(config.timeout):
                await asyncio.get_running_loop().create_connection(
                    lambda: connection, config.host, config.port
                )
        except TimeoutError:
            return connect_fault(f"no TCP connection to {where} within {config.timeout:g} s")
        except OSError as exc:
            return connect_fault(f"could not connect to {where}: {exc.strerror or exc}")
        try:
            if tls is not None and config.security == "tls":
                failed = await self._handshake(connection, tls, implicit=True)
                if failed is not None:
                    return failed
            failed = await self._greeting(connection)
            if failed is None and tls is not None and config.security == "starttls":
                failed = await self._start_tls(connection, tls)
            if failed is None and self._auth is not None:
                failed = await self._authenticate(connection, self._auth)
        except FAULTS as exc:
            return connect_fault(str(exc) or type(exc).__name__)
        return failed

    async def _greeting(self, connection: SmtpConnection) -> SendResult | None:
        config = self._config
        try:
            code, text = await connection.reply()
        except FAULTS as exc:
            if connection.encrypted:
                raise
            return no_greeting_fault(config, exc)
        if code == 220:
            return await self._hello(connection)
        if 400 <= code < 600:
            # 421 "too many connections", 554 "no service for you": the server's call.
            return reply_result(code, text, Stage.CONNECT)
        return unexpected_reply(
            code, text, Stage.CONNECT, command="the connection", expected="a 220 greeting"
        )

    async def _hello(self, connection: SmtpConnection) -> SendResult | None:
        name = self._local_name or await self._hostname(connection)
        connection.write(b"EHLO " + name + b"\r\n")
        code, text = await connection.reply()
        if code == 250:
            connection.extensions = parse_extensions(text)
            return None
        if code == CLOSING:
            return reply_result(code, text, Stage.CONNECT)
        # An RFC 821 server: plain HELO, and no extensions (so no pipelining).
        connection.write(b"HELO " + name + b"\r\n")
        code, text = await connection.reply()
        if code == 250:
            connection.extensions = {}
            return None
        if 400 <= code < 600:
            return reply_result(code, text, Stage.CONNECT)
        return unexpected_reply(code, text, Stage.CONNECT, command="HELO", expected="250")

    async def _start_tls(
        self, connection: SmtpConnection, tls: ssl.SSLContext
    ) -> SendResult | None:
        if "STARTTLS" not in connection.extensions:
            return connect_fault(
                "SMTP_SECURITY is starttls but the server does not offer STARTTLS"
                + _port_hint(self._config, "starttls"),
                config_error=True,
            )
        connection.write(b"STARTTLS\r\n")
        code, text = await connection.reply()
        if code != 220:
            if 400 <= code < 500:
                return reply_result(code, text, Stage.CONNECT)  # "TLS not available now"
            # A 250 here would let everything that follows go out in clear text.
            return unexpected_reply(
                code, text, Stage.CONNECT, command="STARTTLS", expected="220", config_error=True
            )
        failed = await self._handshake(connection, tls, implicit=False)
        # What the server offered in clear text may have been tampered with: ask again.
        return failed or await self._hello(connection)

    async def _handshake(
        self, connection: SmtpConnection, tls: ssl.SSLContext, *, implicit: bool
    ) -> SendResult | None:
        config = self._config
        try:
            await connection.start_tls(tls, config.host)
        except ssl.SSLCertVerificationError as exc:
            if exc.verify_code in _NAME_MISMATCH:
                hint = f"SMTP_HOST must be a name the certificate is for, not {config.host}"
            else:
                hint = "for a private CA, set SMTP_CA_FILE to its PEM bundle"
            return connect_fault(
                f"the server's certificate was refused: {exc.verify_message or exc} ({hint})",
                config_error=True,
            )
        except _TLS_FAULTS as exc:
            detail = str(exc) or type(exc).__name__
            hint = _port_hint(config, "tls") if implicit else ""
            return connect_fault(f"the TLS handshake failed: {detail}{hint}", config_error=True)
        return None

    async def _authenticate(
        self, connection: SmtpConnection, auth: Authenticator
    ) -> SendResult | None:
        if not connection.encrypted and not self._config.allow_insecure_auth:
            # Never the password (or a token) in clear text, unless asked for on purpose.
            return connect_fault(
                "not sending credentials over an unencrypted connection: set SMTP_SECURITY "
                "to starttls or tls, or SMTP_ALLOW_INSECURE_AUTH=true if this network is "
                "trusted",
                config_error=True,
            )
        return await auth.authenticate(connection)

    async def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            # Loading the CA bundle reads files: keep it off the event loop, once.
            config = self._config
            self._tls = await asyncio.to_thread(tls_context, config.verify_cert, config.ca_file)
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


def tls_context(verify: bool, ca_file: str | None = None) -> ssl.SSLContext:
    """Certificate and host name checked against ``ca_file``, or the system's CAs."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def no_greeting_fault(config: SmtpConfig, exc: BaseException) -> SendResult:
    """A plain-text connection the server never greeted: often a TLS port spoken to in clear."""
    what = "no greeting" if isinstance(exc, TimeoutError) else "the connection closed"
    return connect_fault(
        f"{what} from {config.host}:{config.port} ({exc})" + _port_hint(config, "none"),
        config_error=config.port == _IMPLICIT_TLS_PORT,
    )


def _port_hint(config: SmtpConfig, failed: str) -> str:
    """What to change when the security mode does not match what the port speaks."""
    if failed == "tls":
        return (
            f"; SMTP_SECURITY=tls expects TLS from the first byte (port 465), and port "
            f"{config.port} may be speaking plain SMTP first: for 587 or 25 set "
            "SMTP_SECURITY=starttls"
        )
    if config.port == _IMPLICIT_TLS_PORT:
        return "; port 465 expects TLS from the first byte: set SMTP_SECURITY=tls"
    if failed == "starttls":
        return ""
    return "; if this port expects TLS from the first byte (usually 465), set SMTP_SECURITY=tls"
