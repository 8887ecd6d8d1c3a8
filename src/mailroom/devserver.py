"""`mailroom dev`: migrations, the API, the worker and a capture inbox in one process.

All of it shares one event loop, so Ctrl-C stops it in order: the API stops
accepting requests, the worker drains, then the inbox closes. A second Ctrl-C stops
without waiting for the deliveries in flight (each is retried later).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path

import structlog
import uvicorn

from mailroom.api.app import create_app
from mailroom.api.server import server_options
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

Dashboard (sign in with the key above):

    {base}/dashboard/login

See the log:

    curl -s {base}/logs/email -H 'Authorization: Bearer {key}'
"""


class DevServerError(Exception):
    """A start-up problem with a message meant for the person at the terminal."""


class DevStopForced(Exception):
    """A second Ctrl-C (or SIGTERM) stopped `mailroom dev` without waiting for deliveries."""


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers.

    uvicorn replaces SIGINT's handler while it serves and, once serve() returns, raises
    the signal again for the handler it put back: asyncio's, which then cancels the
    whole of `mailroom dev` in the middle of the worker's drain. _Stopper handles the
    signals instead and asks this server to exit.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class _Stopper:
    """SIGINT and SIGTERM for `mailroom dev`: the first stops it in order, the second at once.

    Before the API serves (migrations, the key), the first signal cancels start-up;
    while it serves, it asks uvicorn to exit and the worker then drains as usual.
    """

    def __init__(self) -> None:
        self.server: _Server | None = None
        self.requested = 0
        self._task = asyncio.current_task()

    def __enter__(self) -> _Stopper:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)
        return self

    def __exit__(self, *exc_info: object) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        self.requested += 1
        serving = self.server is not None and self.server.started
        if self.requested == 1 and serving:
            log.info("dev.stopping", signal=sig.name, hint="Ctrl-C again to stop at once")
            assert self.server is not None
            self.server.should_exit = True
            return
        log.info("dev.stopping_now", signal=sig.name)
        if self.server is not None:
            self.server.force_exit = True
        if self._task is not None:
            self._task.cancel()


def dev_settings(settings: Settings) -> Settings:
    """Development lets webhooks reach receivers on this machine over plain http."""
    return settings.model_copy(update={"webhook_allow_http": True, "webhook_allow_private": True})


async def run_dev(settings: Settings, *, api_port: int, smtp_port: int) -> None:
    """Serve until SIGINT or SIGTERM; DevStopForced when a second one cut the stop short."""
    with _Stopper() as stopper:
        try:
            await _run_dev(settings, stopper, api_port=api_port, smtp_port=smtp_port)
        except asyncio.CancelledError:
            if not stopper.requested:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            if stopper.requested > 1:
                raise DevStopForced from None
            log.info("dev.stopped_before_start")


async def _run_dev(settings: Settings, stopper: _Stopper, *, api_port: int, smtp_port: int) -> None:
    settings = dev_settings(settings)
    log.warning(
        "dev.webhooks_unrestricted",
        hint="WEBHOOK_ALLOW_HTTP and WEBHOOK_ALLOW_PRIVATE are on: webhooks may go to "
        "http:// URLs and to loopback and private addresses (development only)",
    )
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

    config = uvicorn.Config(
        create_app(settings, inbox=inbox), host=DEV_HOST, port=api_port, **server_options(settings)
    )
    server = stopper.server = _Server(config)
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
            # Returns once _Stopper sets should_exit (or the port cannot be bound).
            await server.serve()
    finally:
        if smtp_server is not None:
            smtp_server.close()
            await smtp_server.wait_closed()
        log.info("dev.stopped")
