"""A controllable SMTP server (aiosmtpd) for tests: accept, reject, defer, delay or drop."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from mailroom.devinbox.server import start_smtp_server
from mailroom.devinbox.store import CapturedMessage, Inbox

DROP = "drop"  # a scripted reply that closes the connection instead of answering


@dataclass
class ScriptedHandler:
    """Replies to DATA from ``data_replies`` in order (then 250); refuses listed recipients."""

    inbox: Inbox = field(default_factory=Inbox)
    data_replies: deque[str] = field(default_factory=deque)
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_delay: float = 0.0
    transactions: int = 0
    connections: int = 0
    close_after_data: bool = False  # hang up after answering, as idle-timeout servers do

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        self.connections += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        reply = self.rcpt_replies.get(address.lower())
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.transactions += 1
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        if self.data_replies:
            reply = self.data_replies.popleft()
            if reply == DROP:
                transport = server.transport
                assert isinstance(transport, asyncio.Transport)
                transport.abort()
                return "421 closing"
            if not reply.startswith("2"):
                return reply
        content = envelope.original_content or envelope.content or b""
        raw = content if isinstance(content, bytes) else content.encode()
        self.inbox.add(
            CapturedMessage(
                envelope_from=str(envelope.mail_from), envelope_to=tuple(envelope.rcpt_tos), raw=raw
            )
        )
        if self.close_after_data:
            transport = server.transport
            assert transport is not None
            asyncio.get_running_loop().call_soon(transport.close)
        return "250 2.0.0 OK queued"

    def messages(self) -> list[CapturedMessage]:
        return list(self.inbox)


class SmtpTestServer:
    def __init__(self) -> None:
        self.handler = ScriptedHandler()
        self._server: asyncio.Server | None = None
        self.host = "127.0.0.1"
        self.port = 0

    async def start(self, port: int = 0) -> None:
        """Listen on ``port`` (0: any free one); start again after stop() to simulate a restart."""
        self._server = await start_smtp_server(self.handler, self.host, port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
