"""`mailroom dev`: migrations, the API, the worker and a capture inbox in one process.

All of it shares one event loop, so Ctrl-C stops it in order: the API stops
accepting requests, the worker drains, then the inbox closes.
"""

from __future__ import annotations

import structlog
import uvicorn

from mailroom.api.app import create_app
from mailroom.db.migrate import migrate
from mailroom.devinbox.server import CaptureHandler, start_smtp_server
from mailroom.devinbox.store import Inbox
from mailroom.settings import Settings
from mailroom.transport.smtp import SmtpConfig, SmtpTransport
from mailroom.worker.runner import DeliveryWorker, smtp_transport

log = structlog.get_logger("mailroom.dev")

DEV_HOST = "127.0.0.1"


class DevServerError(Exception):
    """A start-up problem with a message meant for the person at the terminal."""


async def run_dev(settings: Settings, *, api_port: int, smtp_port: int) -> None:
    await migrate(settings.database_url)
    log.info("dev.migrated")

    inbox: Inbox | None = None
    smtp_server = None
    if settings.smtp_host is None:
        inbox = Inbox()
        try:
            smtp_server = await start_smtp_server(CaptureHandler(inbox), DEV_HOST, smtp_port)
        except OSError as exc:
            raise DevServerError(
                f"Cannot listen for SMTP on {DEV_HOST}:{smtp_port} ({exc.strerror}). "
                "Is another `mailroom dev` running? Choose another port with --smtp-port."
            ) from None
        transport = SmtpTransport(
            SmtpConfig(
                host=DEV_HOST,
                port=smtp_port,
                timeout=settings.smtp_timeout,
                pool_size=settings.smtp_pool_size,
            )
        )
        log.info(
            "dev.inbox_started",
            smtp=f"{DEV_HOST}:{smtp_port}",
            browse=f"http://{DEV_HOST}:{api_port}/dev/inbox",
        )
    else:
        transport = smtp_transport(settings)
        log.info("dev.using_smtp", host=settings.smtp_host)

    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, inbox=inbox),
            host=DEV_HOST,
            port=api_port,
            access_log=False,
            log_config=None,
        )
    )
    try:
        async with DeliveryWorker(settings, transport=transport, grace_period=10):
            log.info(
                "dev.ready",
                api=f"http://{DEV_HOST}:{api_port}",
                docs=f"http://{DEV_HOST}:{api_port}/docs",
                hint="Ctrl-C stops everything",
            )
            # uvicorn handles SIGINT/SIGTERM itself and returns from serve().
            await server.serve()
    finally:
        if smtp_server is not None:
            smtp_server.close()
            await smtp_server.wait_closed()
        log.info("dev.stopped")
