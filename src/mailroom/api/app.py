"""The application factory. Nothing connects until the lifespan starts."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from asgi_correlation_id import CorrelationIdMiddleware
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailroom import __version__
from mailroom.api.errors import install_error_handlers
from mailroom.api.routes import emails, health, logs
from mailroom.api.state import AppState
from mailroom.db.engine import create_engine, create_session_factory
from mailroom.devinbox import routes as dev_inbox
from mailroom.devinbox.store import Inbox
from mailroom.queue.dispatcher import Dispatcher
from mailroom.settings import Settings, get_settings

log = structlog.get_logger("mailroom.api")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


def _valid_request_id(value: str) -> bool:
    return _REQUEST_ID.fullmatch(value) is not None


class RequestLogMiddleware:
    """One ``request.completed`` line per request: method, path, status, duration."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            log.info(
                "request.completed",
                method=scope["method"],
                path=scope["path"],
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 1),
            )


def create_app(settings: Settings | None = None, *, inbox: Inbox | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings)
        dispatcher = Dispatcher(settings)
        app.state.mailroom = AppState(
            settings=settings,
            engine=engine,
            sessions=create_session_factory(engine),
            dispatcher=dispatcher,
            inbox=inbox,
        )
        try:
            yield
        finally:
            await dispatcher.aclose()
            await engine.dispose()

    app = FastAPI(
        title="Mailroom",
        version=__version__,
        summary="Queued email delivery with a complete, queryable log.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.include_router(emails.router)
    app.include_router(logs.router)
    app.include_router(health.router)
    if inbox is not None:
        app.include_router(dev_inbox.router)
    app.add_middleware(RequestLogMiddleware)
    app.add_middleware(
        CorrelationIdMiddleware, header_name="X-Request-ID", validator=_valid_request_id
    )
    return app
