"""SMTP delivery over a pool of reused connections, pipelined when the server allows it.

Up to ``pool_size`` connections, each carrying one transaction at a time and kept
open between messages (a new TCP and TLS handshake per email would dominate the
cost). When the server advertises PIPELINING (RFC 2920), MAIL, every RCPT and DATA
go out in one write and the message body in a second: two round trips per email
instead of 3 + recipients. The replies are still read one by one, in order, so
each is attributed to its stage exactly as in a command-by-command conversation,
which is what servers without PIPELINING get.

The wire level (reply parsing, timeouts, framing) lives in ``smtp_wire``; this
module decides what each reply means for the delivery.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import socket
import ssl
import time
from dataclasses import dataclass, replace

from mailroom.transport.base import Envelope, Outcome, RecipientRefusal, SendResult, Stage
from mailroom.transport.replies import (
    classify_refusals,
    refusal,
    reply_result,
    retry_after_hint,
    split_enhanced,
)
from mailroom.transport.smtp_wire import (
    ConnectionLost,
    SmtpConnection,
    frame_message,
    parse_extensions,
)

# Anything that could end or extend a command line, or that needs SMTPUTF8, which
# address validation already refuses (so build_message never needs it either).
_UNSAFE_ADDRESS = re.compile(r"[^\x21-\x7e]|[<>]")
_HOSTNAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+$")
_QUIT_TIMEOUT = 2.0
# "Service not available, closing transmission channel": no more replies will come,
# so none are waited for (RFC 5321 §3.8).
_CLOSING = 421
# The faults that end a connection; anything else is a bug and propagates.
_FAULTS = (ConnectionLost, TimeoutError, OSError)


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


class _Stale(Exception):
    """A pooled connection turned out to be dead before the server took anything."""


@dataclass(frozen=True)
class _Commands:
    """An envelope turned into command lines once, before it waits for a connection."""

    mail: bytes  # "MAIL FROM:<…>" without its CRLF, so parameters can follow
    rcpts: tuple[bytes, ...]
    body: bytes
    eight_bit: bool


class SmtpTransport:
    def __init__(self, config: SmtpConfig) -> None:
        self._config = config
        self._idle: list[SmtpConnection] = []
        self._connections: set[SmtpConnection] = set()
        self._slots = asyncio.Semaphore(config.pool_size)
        self._tls: ssl.SSLContext | None = None
        self._local_name: bytes | None = None

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    async def send(self, envelope: Envelope) -> SendResult:
        commands = _commands(envelope)
        if isinstance(commands, SendResult):
            return commands
        async with self._slots:
            began = time.monotonic()
            result = await self._deliver(commands, envelope.recipients)
            return replace(result, elapsed=time.monotonic() - began)

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        await asyncio.gather(*(self._quit(connection) for connection in idle))
        for connection in list(self._connections):
            self._discard(connection)

    # -- one delivery ----------------------------------------------------------------

    async def _deliver(self, commands: _Commands, recipients: tuple[str, ...]) -> SendResult:
        pooled = self._idle.pop() if self._idle else None
        if pooled is not None:
            if pooled.reusable:
                with contextlib.suppress(_Stale):
                    return await self._use(pooled, commands, recipients, pooled=True)
            else:
                self._discard(pooled)
            # The server hung up on the idle connection (or was about to): nothing was
            # handed over, so this is no failed attempt; carry on over a new connection.
        opened = await self._open()
        if isinstance(opened, SendResult):
            return opened
        return await self._use(opened, commands, recipients, pooled=False)

    async def _use(
        self,
        connection: SmtpConnection,
        commands: _Commands,
        recipients: tuple[str, ...],
        *,
        pooled: bool,
    ) -> SendResult:
        keep = False
        try:
            result, keep = await self._transact(connection, commands, recipients, pooled=pooled)
            return result
        finally:
            # Also on cancellation: a connection left mid-transaction is out of step.
            if keep and connection.reusable:
                self._idle.append(connection)
            else:
                self._discard(connection)

    async def _transact(
        self,
        connection: SmtpConnection,
        commands: _Commands,
        recipients: tuple[str, ...],
        *,
        pooled: bool,
    ) -> tuple[SendResult, bool]:
        """One MAIL…DATA transaction; returns the result and whether the connection may be reused.

        Raises _Stale when a pooled connection died before the server answered MAIL.
        """
        extensions = connection.extensions
        mail = commands.mail
        if commands.eight_bit and "8BITMIME" in extensions:
            mail += b" BODY=8BITMIME"
        mail += b"\r\n"
        pipelining = "PIPELINING" in extensions
        stage = Stage.MAIL
        body_sent = False
        try:
            try:
                if pipelining:
                    connection.write(b"".join((mail, *commands.rcpts, b"DATA\r\n")))
                else:
                    connection.write(mail)
                code, text = await connection.reply()
            except ConnectionLost:
                if pooled:
                    raise _Stale from None
                raise
            if not 200 <= code < 300:
                if code == _CLOSING:
                    if pooled:
                        raise _Stale  # the idle-timeout notice crossed our MAIL
                    return reply_result(code, text, Stage.MAIL), False
                # A pipelined RCPT and DATA are still owed replies (503s, normally).
                owed = len(commands.rcpts) + 1 if pipelining else 0
                return reply_result(code, text, Stage.MAIL), await self._abandon(connection, owed)

            stage = Stage.RCPT
            refused: list[RecipientRefusal] = []
            for recipient, line in zip(recipients, commands.rcpts, strict=True):
                if not pipelining:
                    connection.write(line)
                code, text = await connection.reply()
                if code == _CLOSING:
                    # Not about this recipient: the server is going away mid-transaction.
                    return reply_result(code, text, Stage.RCPT), False
                if not 200 <= code < 300:
                    refused.append(refusal(recipient, code, text))
            if len(refused) == len(recipients):
                first = refused[0]
                result = SendResult(
                    outcome=classify_refusals(tuple(refused)),
                    code=first.code,
                    enhanced_code=first.enhanced_code,
                    message=first.message,
                    stage=Stage.RCPT,
                    refused=tuple(refused),
                    retry_after=retry_after_hint(first.message),
                )
                return result, await self._abandon(connection, 1 if pipelining else 0)

            stage = Stage.DATA
            if not pipelining:
                connection.write(b"DATA\r\n")
            code, text = await connection.reply()
            if code != 354:
                keep = code != _CLOSING and await self._abandon(connection, 0)
                return reply_result(code, text, Stage.DATA), keep
            body_sent = True
            connection.write(commands.body)
            code, text = await connection.reply()
        except _FAULTS as exc:
            # Before the body nothing was handed over, so a retry is safe; once it is
            # written the server may hold the message even if we never hear so.
            outcome = Outcome.UNKNOWN if body_sent else Outcome.TRANSIENT
            text = str(exc) or type(exc).__name__
            return SendResult(outcome=outcome, code=None, message=text, stage=stage), False
        if not 200 <= code < 300:
            # The final reply ends the transaction either way (RFC 5321 §4.1.1.4): no RSET.
            return reply_result(code, text, Stage.DATA), True
        enhanced, text = split_enhanced(text)
        result = SendResult(
            outcome=Outcome.ACCEPTED,
            code=code,
            enhanced_code=enhanced,
            message=text,
            stage=Stage.DATA,
            refused=tuple(refused),
        )
        return result, True

    async def _abandon(self, connection: SmtpConnection, owed: int) -> bool:
        """Close a refused transaction so the connection can carry the next; False if it can't.

        ``owed`` is how many pipelined replies are still to come, the last one DATA's.
        """
        try:
            for remaining in range(owed, 0, -1):
                code, _ = await connection.reply()
                if remaining == 1 and code == 354:
                    # Some servers start DATA with no valid recipient; a lone dot ends
                    # it without content, and the server has no one to deliver it to.
                    connection.write(b".\r\n")
                    await connection.reply()
            connection.write(b"RSET\r\n")
            code, _ = await connection.reply()
        except _FAULTS:
            return False
        return 200 <= code < 300

    # -- connections -----------------------------------------------------------------

    async def _open(self) -> SmtpConnection | SendResult:
        """A connection ready for MAIL (greeted, TLS, EHLO, AUTH), or why there is none."""
        config = self._config
        loop = asyncio.get_running_loop()
        connection = SmtpConnection(config.timeout)
        self._connections.add(connection)
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
            self._discard(connection)
            return _connect_fault(str(exc), config_error=True)
        except _FAULTS as exc:
            self._discard(connection)
            return _connect_fault(str(exc) or type(exc).__name__)
        except BaseException:
            self._discard(connection)
            raise
        if failed is not None:
            self._discard(connection)
            return failed
        return connection

    async def _hello(self, connection: SmtpConnection) -> SendResult | None:
        name = self._local_name or await self._hostname(connection)
        connection.write(b"EHLO " + name + b"\r\n")
        code, text = await connection.reply()
        if 200 <= code < 300:
            connection.extensions = parse_extensions(text)
            return None
        if code == _CLOSING:
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

    async def _quit(self, connection: SmtpConnection) -> None:
        try:
            connection.write(b"QUIT\r\n")
            await connection.reply(within=min(_QUIT_TIMEOUT, self._config.timeout))
        except _FAULTS:
            pass
        finally:
            self._discard(connection)

    def _discard(self, connection: SmtpConnection) -> None:
        self._connections.discard(connection)
        connection.close()


def _commands(envelope: Envelope) -> _Commands | SendResult:
    for address in (envelope.sender, *envelope.recipients):
        if _UNSAFE_ADDRESS.search(address):
            return SendResult(
                outcome=Outcome.PERMANENT,
                code=None,
                message=f"{address!r} cannot be written on an SMTP command line",
            )
    if not envelope.recipients:
        return SendResult(outcome=Outcome.PERMANENT, code=None, message="no recipients")
    message = envelope.message
    return _Commands(
        mail=b"MAIL FROM:<" + envelope.sender.encode("ascii") + b">",
        rcpts=tuple(b"RCPT TO:<" + r.encode("ascii") + b">\r\n" for r in envelope.recipients),
        body=frame_message(message),
        # 8-bit bodies go out either way (servers take them); BODY=8BITMIME says so.
        eight_bit=not message.isascii(),
    )


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
