"""SMTP delivery over a pool of reused aiosmtplib connections.

aiosmtplib serialises commands on one connection, so concurrency comes from the
pool: up to ``pool_size`` connections, each carrying one transaction at a time and
kept open between messages (a new TLS handshake per email would dominate the cost).
The transaction is driven command by command (MAIL, RCPT…, DATA) so that every
reply is attributed to its stage and a partial recipient refusal is reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from dataclasses import dataclass, replace

import aiosmtplib
from aiosmtplib import (
    SMTPException,
    SMTPRecipientRefused,
    SMTPResponseException,
    SMTPServerDisconnected,
)

from mailroom.transport.base import Envelope, Outcome, RecipientRefusal, SendResult, Stage
from mailroom.transport.replies import (
    classify_refusals,
    refusal,
    reply_result,
    retry_after_hint,
    split_enhanced,
)


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


class _Refused(Exception):
    """Every recipient was refused; carries the refusals out of the transaction."""

    def __init__(self, refusals: tuple[RecipientRefusal, ...]) -> None:
        super().__init__("all recipients refused")
        self.refusals = refusals


class SmtpTransport:
    def __init__(self, config: SmtpConfig) -> None:
        self._config = config
        self._idle: list[aiosmtplib.SMTP] = []
        self._connections: set[aiosmtplib.SMTP] = set()
        self._slots = asyncio.Semaphore(config.pool_size)

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    async def send(self, envelope: Envelope) -> SendResult:
        async with self._slots:
            began = time.monotonic()
            transaction = _Transaction(self._idle.pop() if self._idle else None)
            keep = False
            try:
                result, keep = await self._run(transaction, envelope)
                return replace(result, elapsed=time.monotonic() - began)
            finally:
                client = transaction.client
                if client is not None:
                    if keep and client.is_connected:
                        self._idle.append(client)
                    else:
                        self._discard(client)

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for client in idle:
            with contextlib.suppress(TimeoutError, SMTPException, OSError):
                await asyncio.wait_for(client.quit(), timeout=2)
        for client in list(self._connections):
            self._discard(client)

    # -- one transaction ---------------------------------------------------------

    async def _run(self, tx: _Transaction, envelope: Envelope) -> tuple[SendResult, bool]:
        """Run one transaction; returns the result and whether the connection may be reused."""
        try:
            client = await self._mail_from(tx, envelope.sender)
            tx.stage = Stage.RCPT
            refused = await self._recipients(client, envelope.recipients)
            tx.stage = Stage.DATA
            reply = await client.data(envelope.message)
        except _Refused as exc:
            first = exc.refusals[0]
            result = SendResult(
                outcome=classify_refusals(exc.refusals),
                code=first.code,
                enhanced_code=first.enhanced_code,
                message=first.message,
                stage=Stage.RCPT,
                refused=exc.refusals,
                retry_after=retry_after_hint(first.message),
            )
            return result, await self._reset(tx.client)
        except SMTPResponseException as exc:
            keep = tx.stage is not Stage.CONNECT and await self._reset(tx.client)
            return reply_result(exc.code, exc.message, tx.stage), keep
        except (TimeoutError, SMTPException, OSError, ssl.SSLError) as exc:
            # Lost, or never had, a connection. Before DATA nothing was handed over,
            # so a retry is safe; during DATA the server may already hold the message.
            outcome = Outcome.UNKNOWN if tx.stage is Stage.DATA else Outcome.TRANSIENT
            text = str(exc) or type(exc).__name__
            return SendResult(outcome=outcome, code=None, message=text, stage=tx.stage), False
        enhanced, text = split_enhanced(reply.message)
        result = SendResult(
            outcome=Outcome.ACCEPTED,
            code=reply.code,
            enhanced_code=enhanced,
            message=text,
            stage=Stage.DATA,
            refused=refused,
        )
        return result, True

    async def _mail_from(self, tx: _Transaction, sender: str) -> aiosmtplib.SMTP:
        """MAIL FROM on a pooled connection, or on a new one if the pooled one went stale."""
        pooled = tx.client
        if pooled is not None and pooled.is_connected:
            tx.stage = Stage.MAIL
            try:
                await pooled.mail(sender)
                return pooled
            except SMTPServerDisconnected:
                # The server dropped the idle connection; nothing was sent: reconnect.
                pass
        if pooled is not None:
            self._discard(pooled)
            tx.client = None
        tx.stage = Stage.CONNECT
        client = tx.client = await self._connect()
        tx.stage = Stage.MAIL
        await client.mail(sender)
        return client

    async def _recipients(
        self, client: aiosmtplib.SMTP, recipients: tuple[str, ...]
    ) -> tuple[RecipientRefusal, ...]:
        refused: list[RecipientRefusal] = []
        for recipient in recipients:
            try:
                await client.rcpt(recipient)
            except SMTPRecipientRefused as exc:
                refused.append(refusal(recipient, exc.code, exc.message))
        if len(refused) == len(recipients):
            raise _Refused(tuple(refused))
        return tuple(refused)

    # -- connections -------------------------------------------------------------

    async def _connect(self) -> aiosmtplib.SMTP:
        config = self._config
        client = aiosmtplib.SMTP(
            hostname=config.host,
            port=config.port,
            timeout=config.timeout,
            use_tls=config.security == "tls",
            start_tls=config.security == "starttls",
            validate_certs=config.validate_certs,
        )
        self._connections.add(client)
        try:
            await client.connect()
            if config.username is not None and config.password is not None:
                await client.login(config.username, config.password)
        except BaseException:
            self._discard(client)
            raise
        return client

    async def _reset(self, client: aiosmtplib.SMTP | None) -> bool:
        """RSET after a refused transaction so the connection can be reused."""
        if client is None or not client.is_connected:
            return False
        try:
            await client.rset()
        except (TimeoutError, SMTPException, OSError):
            return False
        return True

    def _discard(self, client: aiosmtplib.SMTP) -> None:
        if client in self._connections:
            self._connections.discard(client)
            client.close()


class _Transaction:
    """The connection a transaction runs on and how far it got."""

    def __init__(self, client: aiosmtplib.SMTP | None) -> None:
        self.client = client
        self.stage = Stage.CONNECT
