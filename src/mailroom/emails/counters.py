"""Folds the counter deltas into the counters every second (see migration 0003).

Runs in every API and worker process; an advisory lock lets one fold at a time.
Readers add the deltas not folded yet, so counts are exact whether or not this
runs: folding only keeps the deltas few, and so the report fast.
"""

from __future__ import annotations

import asyncio

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.emails import log_repository

log = structlog.get_logger(__name__)

FOLD_INTERVAL = 1.0  # seconds


async def fold_once(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        folded = await log_repository.fold_counts(session)
        await session.commit()
    return folded


async def fold_forever(
    sessions: async_sessionmaker[AsyncSession], interval: float = FOLD_INTERVAL
) -> None:
    failing = False
    while True:
        await asyncio.sleep(interval)
        try:
            await fold_once(sessions)
        except Exception as exc:  # noqa: BLE001 - the database may be away; try again
            if not failing:  # once per outage, not every second
                log.warning("counters.fold_failed", error=str(exc) or type(exc).__name__)
            failing = True
        else:
            failing = False
