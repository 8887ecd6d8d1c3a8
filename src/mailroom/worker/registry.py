"""This worker process's row in the worker registry, and its heartbeat.

Another worker takes over this process's `sending` emails once its heartbeat is
WORKER_TAKEOVER_AFTER seconds old, so a process that cannot renew it must stop
claiming: `fresh()` says whether the last renewal is recent enough for a claim to be
safe. Its answers for emails taken over meanwhile are refused by the record's guard
(the attempt number moved on) and logged as possible duplicates.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.emails import workers_repository
from mailroom.periodic import every
from mailroom.settings import Settings

log = structlog.get_logger(__name__)


class ClaimsPaused(Exception):
    """This worker's heartbeat is stale: it must not claim (another may take it over)."""


class WorkerRegistry:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self._sessions = sessions
        self._interval = settings.worker_registry_interval
        self._takeover = settings.worker_takeover_after
        self.worker_id = uuid.uuid4()
        self._host = socket.gethostname()[:255]
        self._renewed_at: float | None = None  # loop time of the last renewal that committed

    async def beat(self) -> None:
        """Register, or renew the heartbeat; commits."""
        started = asyncio.get_running_loop().time()
        async with self._sessions() as session:
            await workers_repository.beat(session, self.worker_id, host=self._host, pid=os.getpid())
            await session.commit()
        # Counted from before the statement: the database's now() is no older than that.
        was_stale = self._renewed_at is not None and not self.fresh()
        self._renewed_at = started
        if was_stale:
            log.warning("worker.heartbeat_resumed", worker_id=str(self.worker_id))

    def fresh(self) -> bool:
        """Whether a claim is safe: the last renewal is more than one interval away from
        the takeover window, so nobody may take this worker's emails over yet."""
        if self._renewed_at is None:
            return False
        age = asyncio.get_running_loop().time() - self._renewed_at
        return age < self._takeover - self._interval

    async def run(self) -> None:
        """Renew the heartbeat every WORKER_REGISTRY_INTERVAL until cancelled."""
        await every(
            self._interval,
            self.beat,
            event="worker.heartbeat_renew_failed",
            # A smaller jitter than the default: the takeover window counts intervals.
            jitter=0.05,
            log_fields={"worker_id": str(self.worker_id)},
        )

    async def unregister(self) -> None:
        """Leave the registry (a clean stop: this worker's emails are all recorded)."""
        try:
            async with self._sessions() as session:
                await workers_repository.unregister(session, self.worker_id)
                await session.commit()
        except Exception as exc:  # noqa: BLE001 - the row goes stale and is forgotten
            log.warning("worker.unregister_failed", error=type(exc).__name__)
