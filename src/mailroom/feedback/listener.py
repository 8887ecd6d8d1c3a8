"""`mailroom bounces`: an SMTP (or LMTP) server that takes bounce and complaint reports.

Point the MX of BOUNCE_DOMAIN (or a relay's bounce forwarding) at it. Every message is
answered only once its report is committed: a database fault answers 451, so the sending
server tries again later and nothing is lost.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.feedback import dsn, service
from mailroom.settings import Settings

log = structlog.get_logger(__name__)

MAX_REPORT_BYTES = 10 * 1024 * 1024


class ReportHandler:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self._sessions = sessions
        self._settings = settings

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content or b""
        raw = content if isinstance(content, bytes) else content.encode()
        events = dsn.parse_report(
            raw, envelope_to=envelope.rcpt_tos, bounce_domain=self._settings.bounce_domain
        )
        try:
            async with self._sessions() as db:
                recorded = await service.receive_report(db, self._settings, events)
                await db.commit()
        except Exception:
            log.exception("bounces.record_failed")
            return "451 4.3.0 Could not record the report; try again later"
        log.info(
            "bounces.received",
            events=len(events),
            matched=recorded.matched,
            unmatched=recorded.unmatched,
            duplicates=recorded.duplicates,
        )
        return "250 2.0.0 Report recorded"


async def start(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    host: str,
    port: int,
    *,
    lmtp: bool = False,
) -> asyncio.Server:
    """Listen on host:port; close the returned server to stop."""
    handler: Any = ReportHandler(sessions, settings)
    loop = asyncio.get_running_loop()
    protocol = LMTP if lmtp else SMTP
    return await loop.create_server(
        lambda: protocol(
            handler,
            hostname="mailroom-bounces",
            loop=loop,
            data_size_limit=MAX_REPORT_BYTES,
            enable_SMTPUTF8=True,
        ),
        host=host,
        port=port,
    )
