"""One look at the log a second for every live emails page this process serves.

However many pages are open, the hub runs two queries a second while at least one is:
the emails created since the newest it has seen (every project's, a keyset query), and
the current state of the emails the pages show that are not final yet (a primary-key
lookup). Each page's stream then keeps what its own filters and project select, in
Python. PostgreSQL stays the source: nothing is published anywhere that could be lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass, field

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.emails import log
from mailroom.emails.log_repository import Position
from mailroom.emails.schemas.responses import EmailLogItem
from mailroom.projects.access import ProjectAccess

logger = structlog.get_logger(__name__)

TICK = 1.0  # seconds between looks at the log
NEW_PER_TICK = 500  # emails read per look; more wait for the next one


@dataclass(frozen=True)
class Tick:
    number: int
    new: list[EmailLogItem] = field(default_factory=list)  # oldest first
    current: dict[uuid.UUID, EmailLogItem] = field(default_factory=dict)


class LiveHub:
    def __init__(self) -> None:
        self._watched: dict[int, set[uuid.UUID]] = {}  # per subscriber: ids not final
        self._next_id = 0
        self._tick = Tick(0)
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._position: Position | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None

    def subscribe(self, sessions: async_sessionmaker[AsyncSession]) -> int:
        self._sessions = sessions
        self._next_id += 1
        self._watched[self._next_id] = set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="dashboard-live")
        return self._next_id

    def unsubscribe(self, subscriber: int) -> None:
        self._watched.pop(subscriber, None)

    def watch(self, subscriber: int, ids: set[uuid.UUID]) -> None:
        if subscriber in self._watched:
            self._watched[subscriber] = ids

    @property
    def number(self) -> int:
        return self._tick.number

    async def after(self, number: int) -> Tick:
        """The first look at the log after look ``number``."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._tick.number > number)
            return self._tick

    async def _run(self) -> None:
        while self._watched:
            try:
                tick = await self._look()
            except Exception:
                logger.warning("dashboard.live_failed", exc_info=True)
                tick = Tick(self._tick.number + 1)
            async with self._changed:
                self._tick = tick
                self._changed.notify_all()
            await asyncio.sleep(TICK)
        # Idle: the next page to open starts from the newest email then, not from here.
        self._position = None

    async def _look(self) -> Tick:
        assert self._sessions is not None
        everyone = ProjectAccess.operator()
        watched = set().union(*self._watched.values())
        async with self._sessions() as session:
            if self._position is None:
                self._position = await log.latest(session) or Position(log.EPOCH, uuid.UUID(int=0))
                new: list[EmailLogItem] = []
            else:
                new = await log.newer(
                    session,
                    log.Criteria(),
                    access=everyone,
                    project=None,
                    than=self._position,
                    limit=NEW_PER_TICK,
                )
            current = (
                await log.emails_now(session, watched, access=everyone, project=None)
                if watched
                else []
            )
        if new:
            self._position = Position(new[-1].created_at, new[-1].id)
        return Tick(self._tick.number + 1, new, {item.id: item for item in current})

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
