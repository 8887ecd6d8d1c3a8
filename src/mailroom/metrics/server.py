"""The worker's metrics endpoint: prometheus_client's HTTP server, in a thread of its own.

It answers ``GET /metrics`` on WORKER_METRICS_HOST:WORKER_METRICS_PORT without
authentication, so it listens on 127.0.0.1 unless told otherwise and must never be
reachable from outside. If the port cannot be bound the worker delivers anyway (mail
matters more than its metrics) and says so in an error log line; Prometheus sees the
target down.
"""

from __future__ import annotations

import asyncio
import threading
from wsgiref.simple_server import WSGIServer

import structlog
from prometheus_client import start_http_server

from mailroom.metrics.collectors import ProviderCollector, SmtpPoolCollector
from mailroom.metrics.registry import WORKER_REGISTRY, combine

log = structlog.get_logger(__name__)


class MetricsServer:
    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    async def stop(self) -> None:
        def shut_down() -> None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)

        await asyncio.to_thread(shut_down)


def serve_worker_metrics(host: str, port: int, transport: object) -> MetricsServer | None:
    """Serve the worker's metrics (and ``transport``'s pool); None when off or not bound."""
    if not port:
        return None
    registry = combine(WORKER_REGISTRY, SmtpPoolCollector(transport), ProviderCollector(transport))
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        log.error(
            "worker.metrics_unavailable",
            host=host,
            port=port,
            error=str(exc),
            hint="delivering without metrics; set WORKER_METRICS_PORT to a free port "
            "(0 turns them off)",
        )
        return None
    shown = f"[{host}]" if ":" in host else host
    log.info("worker.metrics_serving", url=f"http://{shown}:{port}/metrics")
    return MetricsServer(server, thread)
