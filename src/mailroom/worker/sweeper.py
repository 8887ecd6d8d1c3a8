"""Finds emails whose dispatch was lost (Redis flushed, a worker killed) and dispatches them again.

PostgreSQL is the record; Redis may forget anything. Every interval one sweeper
(across all worker processes, by an advisory lock) re-queues overdue ``queued`` and
``retrying`` emails and ``sending`` ones abandoned by their worker (its heartbeat
stale, or the lease expired). Job ids derived from
the email make a re-queue of a job Redis still holds a no-op, and the guarded
claim makes a duplicate job harmless.
"""

from __future__ import annotations

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.emails import delivery
from mailroom.periodic import every
from mailroom.queue.dispatcher import Dispatcher
from mailroom.settings import Settings
from mailroom.unit_of_work import unit_of_work

log = structlog.get_logger(__name__)

SWEEPER_LOCK = 0x6D61696C7377  # any constant shared by every worker


class Sweeper:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        dispatcher: Dispatcher,
        settings: Settings,
    ) -> None:
        self._sessions = sessions
        self._dispatcher = dispatcher
        self._settings = settings

    async def sweep_once(self) -> int:
        """Re-dispatch what Redis lost; returns how many jobs that was."""
        async with unit_of_work(self._sessions, self._dispatcher.dispatch) as uow:
            candidates = await delivery.sweep(uow, settings=self._settings, lock_key=SWEEPER_LOCK)
        # Overdue is not lost: behind a deep backlog a job may still be waiting in Redis.
        lost = await self._dispatcher.absent(candidates)
        if lost and await self._dispatcher.dispatch(lost):
            log.warning("sweeper.redispatched", emails=len(lost))
        return len(lost)

    async def run(self) -> None:
        """Sweep every SWEEP_INTERVAL until cancelled (a database blip: the next one)."""
        await every(self._settings.sweep_interval, self.sweep_once, event="sweeper.failed")
