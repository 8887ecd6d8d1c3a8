"""ASGI middleware: request body limit, per-request response headers, the request log."""

from __future__ import annotations

import json
import time

import structlog
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailroom.api.context import client_address, request_context
from mailroom.api.request_metrics import RequestMetrics
from mailroom.errors import MailroomError, PayloadTooLarge

log = structlog.get_logger("mailroom.api")


async def _send_error(send: Send, error: MailroomError) -> None:
    body = json.dumps(error.body()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": error.status_code,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyTooLarge(StarletteHTTPException):
    """Raised while the body is read, once it passes the limit (mapped to Mailroom's 413).

    An HTTPException, so that FastAPI lets it through as it reads the body rather than
    turning it into a 400.
    """

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"The request body is larger than {max_bytes} bytes.")


class BodyLimitMiddleware:
    """Refuse bodies over ``max_bytes`` with 413 before anything parses them.

    A declared Content-Length over the limit is answered at once. Otherwise the body is
    counted as it is read, which happens only after the route has authenticated the
    caller (see api.security): nothing here reads, so a request without a valid key is
    answered 401 without a byte of its body buffered. Past the limit, reading stops with
    a 413 before a JSON parser sees anything.
    """

    def __init__(
        self, app: ASGIApp, max_bytes: int, per_path: dict[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.per_path = per_path or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        max_bytes = self.per_path.get(scope["path"], self.max_bytes)
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > max_bytes:
                    await _send_error(send, PayloadTooLarge(BodyTooLarge(max_bytes).detail))
                    return
        size = 0

        async def limited() -> Message:
            nonlocal size
            message = await receive()
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > max_bytes:
                    raise BodyTooLarge(max_bytes)
            return message

        await self.app(scope, limited, send)


class RequestContextMiddleware:
    """Adds headers the request asked for (rate limits) and the security headers every
    response carries, and logs one line per request.

    ``request.completed``: method, path, status, duration, client IP and key name (never
    the key). The request id comes from asgi-correlation-id's context.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        context = request_context(scope)
        observed = RequestMetrics(scope)  # metrics: count and time by route template

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            observed.sent(message)
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                for name, value in context.response_headers.items():
                    if name.lower().encode() not in present:
                        headers.append((name.lower().encode(), value.encode()))
                # Responses carry addresses and bodies: never sniffed into HTML by a
                # browser, never kept by a cache (the docs' assets say otherwise).
                headers.append((b"x-content-type-options", b"nosniff"))
                if b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            observed.finished(time.perf_counter() - started)
            log.info(
                "request.completed",
                method=scope["method"],
                path=scope["path"],
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 1),
                client_ip=client_address(scope),
                key=context.caller.name if context.caller else None,
            )
