"""Who sends next: at most ``pool_size`` senders hold a connection, the rest wait in turn.

A sender whose message has been uploaded may hand its connection (and its place) to the
first waiting sender before the server has answered the final dot: that sender's MAIL,
RCPT and DATA then follow the body at once, in the same round trip (RFC 2920 allows the
message content as the first "command" of a group). It reads its replies only after
the final reply of the message ahead, and starts over on another connection if that
reply left the connection unusable (a 421, a timeout). Over a connection tens of
milliseconds away this halves the round trips per message.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from mailroom.transport.smtp_wire import SmtpConnection


@dataclass(eq=False)
class Handoff:
    """A connection passed on with a transaction still awaiting its final reply on it."""

    connection: SmtpConnection
    # Resolved by the transaction ahead once it has its final reply: True if the
    # connection is still in step and may carry this sender's transaction.
    turn: asyncio.Future[bool] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    # The sender was cancelled before it could use it: nothing of its was written.
    declined: bool = False
    # The sender was cancelled after writing its commands, before its turn: replies are
    # owed to nobody, so the connection must go once the transaction ahead is done.
    abandoned: bool = False


class Slots:
    def __init__(self, size: int) -> None:
        self._free = size
        self._waiters: deque[asyncio.Future[Handoff | None]] = deque()

    async def acquire(self) -> Handoff | None:
        """A place of one's own (None), or a connection handed over with its place."""
        if self._free and not self._waiters:
            self._free -= 1
            return None
        waiter: asyncio.Future[Handoff | None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if not waiter.done():
                waiter.cancel()  # skipped by release() and hand_over()
            elif not waiter.cancelled():
                # Cancelled just as it was served: pass the place on.
                handoff = waiter.result()
                if handoff is not None:
                    handoff.declined = True
                self.release()
            raise

    def release(self) -> None:
        """Give a place up: to the first sender waiting, or back to the pool."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1

    def hand_over(self, connection: SmtpConnection) -> Handoff | None:
        """Pass ``connection`` and the caller's place to the first waiting sender, if any."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                handoff = Handoff(connection)
                waiter.set_result(handoff)
                return handoff
        return None
