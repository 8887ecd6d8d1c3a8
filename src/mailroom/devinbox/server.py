"""An aiosmtpd server, run on the caller's event loop, that files every message in an Inbox."""

from __future__ import annotations

import asyncio
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from mailroom.devinbox.store import CapturedMessage, Inbox


class CaptureHandler:
    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content or b""
        raw = content if isinstance(content, bytes) else content.encode()
        message = CapturedMessage(
            envelope_from=str(envelope.mail_from or ""),
            envelope_to=tuple(envelope.rcpt_tos),
            raw=raw,
        )
        self.inbox.add(message)
        return f"250 2.0.0 OK: queued as {message.id}"


async def start_smtp_server(handler: Any, host: str, port: int) -> asyncio.Server:
    """Listen on host:port with any aiosmtpd ``handler``; close the returned server to stop."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        # SMTPUTF8: internationalized addresses (jöhn@example.com) reach the inbox too.
        lambda: SMTP(
            handler,
            hostname="mailroom-dev-inbox",
            loop=loop,
            data_size_limit=None,
            enable_SMTPUTF8=True,
        ),
        host=host,
        port=port,
    )
