"""A raw SMTP peer scripted line by line, for conversations aiosmtpd will not hold.

Each accepted connection runs the next script; a script reads the client's lines
and answers exactly as the test needs (withhold replies until a whole pipelined
group has arrived, hang up after the final dot, greet with 421...). A script's
failed assertion is re-raised when the server is left, so the conversation is
checked as well as the result the transport returned.
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from mailroom.transport.base import Envelope
from mailroom.transport.smtp import SmtpConfig, SmtpTransport

Script = Callable[["Peer"], Awaitable[None]]

MESSAGE = b"From: sender@example.com\r\nTo: a@example.com\r\nSubject: Hi\r\n\r\nHello\r\n"
ONE = Envelope("sender@example.com", ("a@example.com",), MESSAGE)
TWO = Envelope("sender@example.com", ("a@example.com", "b@example.com"), MESSAGE)


class Peer:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def line(self) -> str:
        raw = await self._reader.readline()
        if not raw:
            raise AssertionError("the client closed the connection")
        assert raw.endswith(b"\r\n"), f"a command line must end in CRLF: {raw!r}"
        return raw[:-2].decode()

    async def lines(self, count: int) -> list[str]:
        return [await self.line() for _ in range(count)]

    async def expect(self, verb: str) -> str:
        line = await self.line()
        assert line.upper().startswith(verb.upper()), f"expected {verb}, got {line!r}"
        return line

    async def send(self, *replies: str) -> None:
        self._writer.write("".join(f"{reply}\r\n" for reply in replies).encode())
        await self._writer.drain()

    async def greet(self, *extensions: str) -> str:
        """The greeting and an EHLO reply offering ``extensions``; returns the EHLO line."""
        await self.send("220 scripted ESMTP")
        ehlo = await self.expect("EHLO")
        await self.send(*(f"250-{e}" for e in ("scripted", *extensions)), "250 HELP")
        return ehlo

    async def body(self) -> bytes:
        """The DATA content as sent (still dot-stuffed), without the final ``.CRLF``."""
        content = await self._reader.readuntil(b"\r\n.\r\n")
        return content[: -len(b".\r\n")]

    async def closed(self) -> None:
        """Wait for the client to hang up, having sent nothing more."""
        rest = await self._reader.read()
        assert rest == b"", f"unexpected data before the hang-up: {rest!r}"

    async def read(self, limit: int) -> bytes:
        """Up to ``limit`` bytes as they come (b"" once the client closed)."""
        return await self._reader.read(limit)

    def hang_up(self) -> None:
        self._writer.transport.abort()


class ScriptedServer:
    def __init__(self, *scripts: Script, receive_buffer: int | None = None) -> None:
        """``receive_buffer``: a small SO_RCVBUF, so that a script that stops reading
        stops the client's upload soon instead of after megabytes of kernel buffers."""
        self._receive_buffer = receive_buffer
        self._scripts = deque(scripts)
        self._tasks: list[asyncio.Task[None]] = []
        self._errors: list[BaseException] = []
        self._server: asyncio.Server | None = None
        self.host = "127.0.0.1"
        self.port = 0
        self.connections = 0
        self.finished = asyncio.Event()  # set when every script has run to its end

    async def __aenter__(self) -> ScriptedServer:
        listener = socket.socket()
        if self._receive_buffer is not None:
            # Set before listen(), so that accepted sockets inherit it (and a small TCP window).
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self._receive_buffer)
        listener.bind((self.host, 0))
        self._server = await asyncio.start_server(self._accept, sock=listener)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=5)
            for task in pending:
                task.cancel()
                self._errors.append(AssertionError("a script was still running at the end"))
        await self._server.wait_closed()
        if exc is None and self._errors:
            raise self._errors[0]
        if exc is None:
            assert not self._scripts, f"{len(self._scripts)} scripted connection(s) never came"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.append(task)
        try:
            if not self._scripts:
                raise AssertionError(f"unexpected connection #{self.connections}")
            await self._scripts.popleft()(Peer(reader, writer))
        except Exception as exc:  # noqa: BLE001 - whatever failed in a script must fail the test
            self._errors.append(exc)
        finally:
            writer.close()
            if not self._scripts and all(t.done() or t is task for t in self._tasks):
                self.finished.set()


def transport_for(server: ScriptedServer, **overrides: Any) -> SmtpTransport:
    # A failing test may wait for this timeout; a passing one never does.
    config: dict[str, Any] = {"host": server.host, "port": server.port, "timeout": 2.0}
    config.update(overrides)
    return SmtpTransport(SmtpConfig(**config))


async def accept_pipelined(peer: Peer, recipients: int = 1) -> bytes:
    """One pipelined transaction, every command accepted; returns the body as sent."""
    group = await peer.lines(recipients + 2)
    assert group[0].startswith("MAIL FROM:")
    assert group[-1] == "DATA"
    await peer.send("250 2.1.0 Ok", *["250 2.1.5 Ok"] * recipients, "354 End data with .")
    body = await peer.body()
    await peer.send("250 2.0.0 Ok: queued")
    return body


async def quit_politely(peer: Peer) -> None:
    await peer.expect("QUIT")
    await peer.send("221 2.0.0 Bye")
    await peer.closed()


async def one_message(peer: Peer) -> None:
    """A whole session: greeting with PIPELINING, one message accepted, then QUIT."""
    await peer.greet("PIPELINING")
    await accept_pipelined(peer)
    await quit_politely(peer)
