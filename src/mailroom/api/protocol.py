"""The HTTP connection: uvicorn's httptools protocol with request deadlines and a connection cap.

uvicorn times only the idle time between requests (``timeout_keep_alive``), and resets
that on every byte received: a client that trickles its headers or its body a byte at a
time holds a connection (and a file descriptor) for as long as it likes, and a few
hundred such clients lock everyone else out. Each connection here has a deadline:

- a request's head (request line and headers) must be complete within
  REQUEST_HEADER_TIMEOUT of the connection opening or of the request's first byte;
- its body within REQUEST_BODY_TIMEOUT of the head.

Past either, the client gets ``408`` (Mailroom's JSON error) and the connection is closed.
A request arriving while MAX_CONNECTIONS connections are open (its own included) is
answered ``503`` with ``Retry-After`` and its connection closed, rather than queued.

ASGI middleware cannot do any of this: it runs only once the head is parsed.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import structlog
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from mailroom.errors import MailroomError, RequestTimeout, ServiceUnavailable

log = structlog.get_logger("mailroom.api")

OVER_CAPACITY_RETRY_AFTER = 1  # seconds


def _timed_out(error: RequestTimeout) -> bytes:
    """A whole 408 response, written straight to the socket (there may be no request)."""
    body = json.dumps(error.body()).encode()
    head = (
        b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
    )
    return head + body


def _over_capacity() -> MailroomError:
    return ServiceUnavailable(
        "Too many connections to this server; try again shortly.",
        headers={"Retry-After": str(OVER_CAPACITY_RETRY_AFTER)},
    )


async def _answer_over_capacity(scope: Any, receive: Any, send: Any) -> None:
    error = _over_capacity()
    body = json.dumps(error.body()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(OVER_CAPACITY_RETRY_AFTER).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class GuardedHttpProtocol(HttpToolsProtocol):
    """One connection. Built by uvicorn through ``functools.partial`` with the limits."""

    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        header_timeout: float,
        body_timeout: float,
        max_connections: int,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._header_timeout = header_timeout
        self._body_timeout = body_timeout
        self._max_connections = max_connections
        self._deadline: asyncio.TimerHandle | None = None

    # -- the deadlines ------------------------------------------------------------------

    def _arm(self, seconds: float, phase: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._too_slow, phase)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self, phase: str) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        answered = phase == "body" and cycle is not None and cycle.response_started
        if phase == "body" and cycle is not None and not cycle.response_started:
            # The application is waiting for the rest of the body: it now reads a
            # disconnect, and whatever it sends is dropped.
            cycle.disconnected = True
            cycle.message_event.set()
        if not answered:
            limit = self._header_timeout if phase == "headers" else self._body_timeout
            error = RequestTimeout(f"The request's {phase} did not arrive within {limit:g} s.")
            self.transport.write(_timed_out(error))
        client = self.client[0] if self.client else "unknown"
        log.info("http.request_timeout", phase=phase, client_ip=client)
        self.transport.close()

    # -- uvicorn's callbacks --------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self._header_timeout, "headers")  # nothing at all sent counts too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # a later request on a kept-alive connection
            self._arm(self._header_timeout, "headers")

    def on_headers_complete(self) -> None:
        self._arm(self._body_timeout, "body")
        if len(self.connections) <= self._max_connections:
            super().on_headers_complete()
            return
        client = self.client[0] if self.client else "unknown"
        log.warning("http.over_capacity", connections=len(self.connections), client_ip=client)
        app, self.app = self.app, _answer_over_capacity
        try:
            super().on_headers_complete()
        finally:
            self.app = app

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()
