"""`mailroom dev`: migrations, the API, the worker and a capture inbox in one process.

All of it shares one event loop, so Ctrl-C stops it in order: the API stops
accepting requests, the worker drains, then the inbox closes.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import structlog

from mailroom.api.app import create_app
from mailroom.api.server import api_server
from mailroom.auth.service import ensure_dev_key
from mailroom.db.engine import open_database
from mailroom.db.migrate import migrate
from mailroom.devinbox.server import CaptureHandler, start_smtp_server
from mailroom.devinbox.store import Inbox
from mailroom.settings import Settings
from mailroom.transport.base import MailTransport
from mailroom.transport.from_settings import smtp_transport
from mailroom.transport.smtp import SmtpConfig, SmtpTransport
from mailroom.worker.runner import DeliveryWorker

log = structlog.get_logger("mailroom.dev")

DEV_HOST = "127.0.0.1"


DEV_KEY_FILE = Path(".mailroom-dev-key")


def _read_key_file() -> str | None:
    return DEV_KEY_FILE.read_text().strip() if DEV_KEY_FILE.exists() else None


def _write_key_file(key: str) -> None:
    DEV_KEY_FILE.write_text(key + "\n")
    DEV_KEY_FILE.chmod(0o600)


async def _dev_key(settings: Settings) -> tuple[str, bool]:
    """The key saved in DEV_KEY_FILE, so every start of `mailroom dev` prints the same one."""
    async with open_database(settings, pool_size=1) as sessions:
        saved = await asyncio.to_thread(_read_key_file)
        key, created = await ensure_dev_key(sessions, saved)
    if created:
        await asyncio.to_thread(_write_key_file, key)
    return key, created


def _welcome(key: str, created: bool, port: int, inbox: bool) -> str:
    base = f"http://{DEV_HOST}:{port}"
    where = f"{base}/dev/inbox" if inbox else "your SMTP server"
    origin = "created now and saved in" if created else "from"
    return f"""
Mailroom is running: {base} (API docs: {base}/docs)
Development API key ({origin} {DEV_KEY_FILE}):

    {key}

Send an email (it arrives at {where}):

    curl -s -X POST {base}/send \\
      -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\
      -d '{{"to": "jane@example.com", "subject": "Hello", "text": "It works."}}'

See the log:

    curl -s {base}/logs/email -H 'Authorization: Bearer {key}'
"""


class DevServerError(Exception):
    """A start-up problem with a message meant for the person at the terminal."""


async def run_dev(settings: Settings, *, api_port: int, smtp_port: int) -> None:
    await migrate(settings.database_url)
    log.info("dev.migrated")
    key, created = await _dev_key(settings)

    inbox: Inbox | None = None
    smtp_server = None
    transport: MailTransport
    if settings.smtp_host is None and settings.smtp_providers is None:
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
        log.info("dev.using_smtp", host=settings.smtp_host or "SMTP_PROVIDERS")

    server = api_server(create_app(settings, inbox=inbox), DEV_HOST, api_port)
    try:
        # Sandbox emails land in the dev inbox too (when there is one) rather than nowhere.
        sandbox = transport if inbox is not None else None
        async with DeliveryWorker(
            settings, transport=transport, sandbox_transport=sandbox, grace_period=10
        ):
            log.info(
                "dev.ready",
                api=f"http://{DEV_HOST}:{api_port}",
                docs=f"http://{DEV_HOST}:{api_port}/docs",
                hint="Ctrl-C stops everything",
            )
            print(_welcome(key, created, api_port, inbox is not None), flush=True)
            # uvicorn handles SIGINT/SIGTERM itself and returns from serve().
            await server.serve()
    finally:
        if smtp_server is not None:
            smtp_server.close()
            await smtp_server.wait_closed()
        log.info("dev.stopped")
