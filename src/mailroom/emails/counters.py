"""Folds the counter deltas into the counters every second (see migrations 0003 and 0012:
the emails' counters and the attempts' per provider).

Runs in every API and worker process; an advisory lock lets one fold at a time.
Readers add the deltas not folded yet, so counts are exact whether or not this
runs: folding only keeps the deltas few, and so the report fast.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.emails import log_repository, provider_counts
from mailroom.periodic import every

FOLD_INTERVAL = 1.0  # seconds


async def fold_once(sessions: async_sessionmaker[AsyncSession]) -> int:
    """Fold both; returns how many email counter deltas were folded."""
    async with sessions() as session:
        folded = await log_repository.fold_counts(session)
        await provider_counts.fold(session)
        await session.commit()
    return folded


async def fold_forever(
    sessions: async_sessionmaker[AsyncSession], interval: float = FOLD_INTERVAL
) -> None:
    async def fold() -> None:
        await fold_once(sessions)

    # A database away: counts stay exact meanwhile (readers add the deltas).
    await every(interval, fold, event="counters.fold_failed")
