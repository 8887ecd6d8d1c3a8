"""How Mailroom runs the API under uvicorn (used by `mailroom api` and `mailroom dev`)."""

from __future__ import annotations

import functools
from typing import Any

import uvicorn
from fastapi import FastAPI

from mailroom.api.protocol import GuardedHttpProtocol
from mailroom.metrics.registry import multiprocess_directory
from mailroom.settings import Settings, get_settings

_OPTIONS: dict[str, Any] = {
    # Mailroom logs each request itself (request.completed), through structlog.
    "access_log": False,
    "log_config": None,
    # create_app mounts uvicorn's ProxyHeadersMiddleware with TRUSTED_PROXIES (so tests
    # and `mailroom dev` have it too); uvicorn's own would believe 127.0.0.1 by default.
    "proxy_headers": False,
    "server_header": False,
    # Longer than clients' idle-connection expiry (httpx, urllib3, Node: ≤ 5-60 s), so
    # the server is not the side that closes an idle keep-alive connection just as a
    # client reuses it for a POST (which clients do not retry on their own).
    "timeout_keep_alive": 75,
}


def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's options: Mailroom's connection protocol with its deadlines and cap."""
    protocol = functools.partial(
        GuardedHttpProtocol,
        header_timeout=settings.request_header_timeout,
        body_timeout=settings.request_body_timeout,
        max_connections=settings.max_connections,
    )
    # No WebSocket route exists: an Upgrade request is served as plain HTTP.
    return {**_OPTIONS, "http": protocol, "ws": "none"}


def api_server(
    app: FastAPI, host: str, port: int, *, settings: Settings | None = None
) -> uvicorn.Server:
    """One process serving ``app`` (the caller runs its event loop)."""
    options = server_options(settings or get_settings())
    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, **options))


def served_app() -> FastAPI:
    """The app of one of several API processes (uvicorn imports this in each of them)."""
    from mailroom.api.app import create_app
    from mailroom.gc_tuning import tune_for_serving

    app = create_app()
    tune_for_serving()
    return app


def run_api_processes(
    host: str, port: int, processes: int, *, settings: Settings | None = None
) -> None:
    """Serve from ``processes`` processes sharing one socket, restarted if they die.

    The API is CPU-bound in Python, so one process uses one core; each process builds
    its own app (and its own engine and Redis clients) from the environment. They
    share a metrics directory, so GET /metrics, whichever process answers, reports
    totals over all of them (see mailroom.metrics.registry).
    """
    with multiprocess_directory():
        uvicorn.run(
            "mailroom.api.server:served_app",
            factory=True,
            host=host,
            port=port,
            workers=processes,
            loop="uvloop",
            **server_options(settings or get_settings()),
        )
