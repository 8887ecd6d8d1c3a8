"""A webhook receiver served for real (asyncio streams, HTTP/1.1) for the webhook tests.

It keeps every request (headers, body) and answers as ``behaviour`` says: a status with
headers and a body, or one of the hostile replies a receiver can give (a huge body, a
body that never ends, no answer at all). ``stop()`` and ``start()`` take it down and bring
it back on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    mode: str = "normal"  # normal | huge | endless | hang
    delay: float = 0.0


Behaviour = Callable[[Received], Reply]


class WebhookReceiver:
    def __init__(self, behaviour: Behaviour | None = None) -> None:
        self.behaviour: Behaviour = behaviour or (lambda _: Reply())
        self.received: list[Received] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._handlers):
                task.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        line = await reader.readline()
        if not line:
            return False
        _, path, _ = line.decode().split(" ", 2)
        headers: dict[str, str] = {}
        while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = header.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        request = Received(path, headers, body)
        self.received.append(request)
        reply = self.behaviour(request)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.mode == "hang":
            await asyncio.sleep(3600)
        head = f"HTTP/1.1 {reply.status} X\r\n"
        extra = "".join(f"{k}: {v}\r\n" for k, v in reply.headers.items())
        if reply.mode == "endless":
            writer.write(f"{head}{extra}content-type: text/plain\r\n\r\n".encode())
            while True:  # no length, no end: only the client closing stops it
                writer.write(b"x" * 65536)
                await writer.drain()
        if reply.mode == "huge":
            size = 50 * 1024 * 1024
            writer.write(f"{head}{extra}content-length: {size}\r\n\r\n".encode())
            for _ in range(size // 65536):
                writer.write(b"y" * 65536)
                await writer.drain()
            return False
        writer.write(f"{head}{extra}content-length: {len(reply.body)}\r\n\r\n".encode())
        writer.write(reply.body)
        await writer.drain()
        return True


@contextlib.asynccontextmanager
async def webhook_receiver(behaviour: Behaviour | None = None) -> AsyncIterator[WebhookReceiver]:
    receiver = WebhookReceiver(behaviour)
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.stop()
