"""The application factory. Nothing connects until the lifespan starts."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from asgi_correlation_id import CorrelationIdMiddleware
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from mailroom import __version__
from mailroom.api.dashboard.routes import install_dashboard
from mailroom.api.docs import install_docs
from mailroom.api.errors import install_error_handlers
from mailroom.api.middleware import BodyLimitMiddleware, RequestContextMiddleware
from mailroom.api.ratelimit import SendRateLimiter
from mailroom.api.routes import (
    dev_inbox,
    emails,
    feedback,
    health,
    logs,
    metrics,
    suppressions,
    webhooks,
)
from mailroom.api.state import AppState
from mailroom.auth.service import KeyChecker
from mailroom.db.engine import create_engine, create_session_factory
from mailroom.devinbox.store import Inbox
from mailroom.emails.counters import fold_forever
from mailroom.emails.intake import Intake
from mailroom.feedback.intake import FeedbackIntake
from mailroom.feedback.ses import SnsVerifier
from mailroom.queue.dispatcher import Dispatcher
from mailroom.settings import Settings, get_settings

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


def _valid_request_id(value: str) -> bool:
    return _REQUEST_ID.fullmatch(value) is not None


def create_app(
    settings: Settings | None = None,
    *,
    inbox: Inbox | None = None,
    feedback_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """``feedback_transport``: where SNS certificates are fetched from (tests serve their own;
    by default, the network)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings)
        sessions = create_session_factory(engine)
        dispatcher = Dispatcher(settings)
        rate_limiter = SendRateLimiter(settings)
        feedback_http = httpx.AsyncClient(transport=feedback_transport, follow_redirects=False)
        app.state.mailroom = AppState(
            settings=settings,
            engine=engine,
            sessions=sessions,
            dispatcher=dispatcher,
            keys=KeyChecker(sessions, ttl=settings.api_key_cache_seconds),
            rate_limiter=rate_limiter,
            intake=Intake(sessions, dispatcher.dispatch, batch_job_size=settings.batch_job_size),
            sns=SnsVerifier(feedback_http),
            feedback=FeedbackIntake(sessions, settings),
            inbox=inbox,
        )
        folding = asyncio.create_task(fold_forever(sessions), name="fold-counters")
        try:
            yield
        finally:
            folding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await folding
            await rate_limiter.aclose()
            await feedback_http.aclose()
            await dispatcher.aclose()
            await engine.dispose()

    app = FastAPI(
        title="Mailroom",
        version=__version__,
        summary="Queued email delivery with a complete, queryable log.",
        lifespan=lifespan,
        # Mailroom exports its own Prometheus metrics. FastAPI's OpenTelemetry hooks would
        # otherwise look up the (unconfigured) providers on every request: 4 % of its CPU.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        # Served by install_docs with their scripts vendored, not from a CDN.
        docs_url=None,
        redoc_url=None,
    )
    install_error_handlers(app)
    install_docs(app)
    app.include_router(emails.send_router)
    app.include_router(emails.router)
    app.include_router(logs.router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(suppressions.router)
    app.include_router(feedback.router)
    app.include_router(webhooks.router)
    if inbox is not None:
        app.include_router(dev_inbox.router)
    install_dashboard(app, settings)
    # Outermost last: the request id exists before anything logs; the body limit acts
    # before any parsing; CORS (only when configured) answers preflights first; the
    # client's address (and scheme) is known before anything else runs.
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        per_path={"/send/batch": settings.max_batch_body_bytes},
    )
    app.add_middleware(RequestContextMiddleware)
    app.add_middleware(
        CorrelationIdMiddleware, header_name="X-Request-ID", validator=_valid_request_id
    )
    if settings.cors_origin_list:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"],
            expose_headers=[
                "X-Request-ID",
                "Idempotent-Replayed",
                "Retry-After",
                "RateLimit-Limit",
                "RateLimit-Remaining",
                "RateLimit-Reset",
                "RateLimit-Policy",
            ],
        )
    if settings.trusted_proxy_networks:
        # X-Forwarded-For is believed only from TRUSTED_PROXIES, read right to left: the
        # client is the nearest hop that is not one of them. Without any, it is ignored.
        app.add_middleware(
            ProxyHeadersMiddleware,
            trusted_hosts=[str(network) for network in settings.trusted_proxy_networks],
        )
    return app
