"""One SMTP client connection at the wire level: replies in, commands out.

Everything here is about bytes and timing; what a reply *means* for a delivery is
decided in ``smtp_transaction``. The class is an ``asyncio.Protocol`` rather than a pair of
streams because the hot path then costs one callback per segment received and one
future per round trip: replies are parsed as they arrive and queued, and a reader
only suspends when the queue is empty, so a pipelined batch of replies is consumed
without going back to the event loop.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
from collections import deque
from typing import cast

# The body goes out in pieces of this size, the next once the transport has passed the
# previous one on: progress is then visible, and a stalled upload can be told from a slow one.
_CHUNK = 64 * 1024
# A server that sends this much without a line break is not speaking SMTP
# (RFC 5321 §4.5.3.1.5 allows 512 octets per reply line).
_MAX_LINE = 8192
_LINE_BREAKS = re.compile(rb"\r\n|\r|\n")
_SPACE, _HYPHEN = ord(" "), ord("-")

Reply = tuple[int, str]


class ConnectionLost(Exception):
    """The connection is gone or unusable (closed, reset, garbled); the text says why."""


def canonical_lines(message: bytes) -> bytes:
    """The message with CRLF line endings, ending in one: what SIZE counts (RFC 1870)."""
    crlf = message.count(b"\r\n")
    # EmailMessage with policy.SMTP already writes CRLF: three counts in C are far
    # cheaper than a regex substitution over every message.
    if message.count(b"\n") != crlf or message.count(b"\r") != crlf:
        message = _LINE_BREAKS.sub(b"\r\n", message)
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    return message


def frame_message(message: bytes) -> bytes:
    """The message as DATA content: CRLF line endings, dot-stuffed, ending in ``CRLF.CRLF``."""
    return dot_stuff(canonical_lines(message))


def dot_stuff(message: bytes) -> bytes:
    """CRLF-ended content as sent after DATA: dot-stuffed, then the final ``.CRLF``."""
    # RFC 5321 §4.5.2: a line starting with "." gets one more, or a line holding a
    # lone "." would end the message early and the rest would be read as commands.
    if b"\n." in message:
        message = message.replace(b"\n.", b"\n..")
    if message.startswith(b"."):
        message = b"." + message
    return message + b".\r\n"


def parse_extensions(ehlo_reply: str) -> dict[str, str]:
    """ESMTP keywords (upper case) and their parameters from an EHLO reply's text."""
    extensions: dict[str, str] = {}
    for line in ehlo_reply.split("\n")[1:]:  # the first line is the server's name
        keyword, _, params = line.strip().partition(" ")
        keyword = keyword.upper()
        if keyword.startswith("AUTH="):
            # Pre-RFC 4954 servers (old Exchange) write "AUTH=LOGIN", often beside "AUTH".
            keyword, params = "AUTH", f"{keyword[5:]} {params}"
        if keyword == "AUTH":
            params = f"{extensions.get('AUTH', '')} {params}"
        if keyword:
            extensions[keyword] = params.strip()
    return extensions


class SmtpConnection(asyncio.Protocol):
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.transport: asyncio.Transport | None = None
        # ESMTP keywords (upper case) and their parameters, from the last EHLO.
        self.extensions: dict[str, str] = {}
        self.encrypted = False  # TLS is up (implicit or after STARTTLS)
        # When the pool last put it aside (loop time), and the timer that closes it then.
        self.idle_since = 0.0
        self.idle_timer: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()
        self._buffer = bytearray()
        self._lines: list[str] = []  # the lines so far of a multi-line reply
        self._replies: deque[Reply] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._fault: str | None = None
        # Set while the transport's write buffer is over its limit (pause_writing).
        self._drained: asyncio.Future[None] | None = None

    # -- asyncio callbacks ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # Each command is one small segment and the next waits for its reply:
            # Nagle's algorithm would hold a segment back for the previous ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _limit_buffer(self.transport)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        start = 0
        while (end := buffer.find(b"\n", start)) >= 0:
            line = buffer[start:end]
            start = end + 1
            if not self._take_line(line):
                self._wake()
                return
        del buffer[:start]
        if len(buffer) > _MAX_LINE:
            self._abort("the server sent a reply line longer than 8 KiB")
            self._wake()
        elif self._replies:
            self._wake()

    def eof_received(self) -> bool:
        return False  # a half-closed SMTP connection is of no use: close it

    def connection_lost(self, exc: Exception | None) -> None:
        if self._fault is None:
            self._fault = str(exc) if exc else "the server closed the connection"
        self._wake()
        self.resume_writing()

    def pause_writing(self) -> None:
        if self._drained is None:
            self._drained = self._loop.create_future()

    def resume_writing(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- reading -------------------------------------------------------------------

    def _take_line(self, line: bytearray) -> bool:
        if line.endswith(b"\r"):
            del line[-1:]
        code = line[:3]
        separator = line[3] if len(line) > 3 else _SPACE
        if len(code) != 3 or not code.isdigit() or separator not in (_SPACE, _HYPHEN):
            self._abort(f"the server sent a line that is not an SMTP reply: {bytes(line[:80])!r}")
            return False
        self._lines.append(line[4:].decode("utf-8", "replace"))
        if separator == _SPACE:  # "250-" continues a reply, "250 " ends it
            text = self._lines[0] if len(self._lines) == 1 else "\n".join(self._lines)
            self._lines = []
            self._replies.append((int(code), text))
        return True

    async def reply(self, within: float | None = None) -> Reply:
        """The next reply; raises ConnectionLost or TimeoutError (and the connection is done)."""
        if self._replies:
            return self._replies.popleft()
        if self._fault is not None:
            raise ConnectionLost(self._fault)
        waiter = self._waiter = self._loop.create_future()
        limit = self.timeout if within is None else within
        # A timer on the future rather than asyncio.wait_for/timeout(): no task or
        # cancellation machinery on the path every reply takes.
        timer = self._loop.call_later(limit, self._expire, waiter, limit)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None
        if self._replies:
            return self._replies.popleft()
        raise ConnectionLost(self._fault or "the connection was lost")

    def _expire(self, waiter: asyncio.Future[None], limit: float) -> None:
        if not waiter.done():
            # A reply may still arrive and would then answer the wrong command.
            self._abort(f"timed out after {limit:g} s waiting for the server's reply")
            waiter.set_exception(TimeoutError(self._fault))

    # -- writing and state -----------------------------------------------------------

    def write(self, data: bytes | memoryview) -> None:
        transport = self.transport
        if self._fault is not None:
            raise ConnectionLost(self._fault)
        if transport is None or transport.is_closing():
            raise ConnectionLost("the connection is closed")
        # No drain() here: commands are a few hundred bytes, and bodies go through
        # upload(), which waits while the transport's buffer is full.
        transport.write(data)

    async def upload(self, data: bytes, stall: float) -> None:
        """Write ``data`` at the pace the server reads it; return once all of it left.

        Raises TimeoutError when the server takes nothing for ``stall`` seconds (and
        ConnectionLost when the connection goes): the end of ``data`` was then never
        handed to the network. A large message to a slow reader takes as long as it
        takes, as long as it moves.
        """
        if len(data) <= _CHUNK:
            self.write(data)
        else:
            view = memoryview(data)
            for start in range(0, len(data), _CHUNK):
                self.write(view[start : start + _CHUNK])
                if self._drained is not None:
                    await self._wait_drained(stall)
        if self._drained is not None:
            await self._wait_drained(stall)

    async def _wait_drained(self, stall: float) -> None:
        drained = self._drained
        assert drained is not None
        timer = self._loop.call_later(stall, self._stalled, drained, stall)
        try:
            await drained
        finally:
            timer.cancel()
        if self._fault is not None:
            raise ConnectionLost(self._fault)

    def _stalled(self, drained: asyncio.Future[None], stall: float) -> None:
        if not drained.done():
            self._abort(f"the server took none of the message for {stall:g} s")
            drained.set_exception(TimeoutError(self._fault))

    @property
    def alive(self) -> bool:
        """Open, and no fault seen (replies may still be due)."""
        transport = self.transport
        return self._fault is None and transport is not None and not transport.is_closing()

    @property
    def reusable(self) -> bool:
        """Open, and nothing arrived that no command asked for (a 421 before a hang-up)."""
        return self.alive and not self._replies and not self._buffer and not self._lines

    async def start_tls(self, context: ssl.SSLContext, server_hostname: str) -> None:
        transport = self.transport
        if transport is None or self._fault is not None:
            raise ConnectionLost(self._fault or "the connection is closed")
        if not self.reusable:
            # Bytes received before the handshake were sent in clear text by someone;
            # reading them as replies after it would let them pass as protected.
            self._abort("the server sent clear text where the TLS handshake was due")
            raise ConnectionLost(self._fault or "")
        tls = await self._loop.start_tls(
            transport,
            self,
            context,
            server_hostname=server_hostname,
            ssl_handshake_timeout=self.timeout,
        )
        if tls is None:
            raise ConnectionLost("the connection closed during the TLS handshake")
        self.transport = tls
        self.encrypted = True
        _limit_buffer(tls)

    def close(self) -> None:
        transport = self.transport
        if self._fault is not None:
            if transport is not None:
                transport.abort()
            return
        self._fault = "the connection was closed by Mailroom"
        if transport is not None:
            transport.close()  # lets a QUIT already written go out first

    def _abort(self, reason: str) -> None:
        self._fault = reason
        self._buffer.clear()
        self._replies.clear()
        if self.transport is not None:
            self.transport.abort()


def _limit_buffer(transport: asyncio.Transport) -> None:
    # Paused above one chunk, resumed only once empty: when an upload is over, the whole
    # message, final dot included, has left Mailroom's buffer for the network.
    transport.set_write_buffer_limits(high=_CHUNK, low=0)
