"""SQL of the delivery attempts counted per provider (see models.ProviderCount).

A range of whole 15-minute buckets costs the counter rows in it plus the deltas not
folded yet, never a scan of the attempts.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, select, text, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from mailroom.emails.models import ProviderCount, ProviderCountDelta


async def fold(session: AsyncSession) -> int:
    """Fold the deltas into the counters; returns how many (0 if another process folds)."""
    result = await session.execute(text("SELECT mailroom_fold_provider_counts()"))
    return int(result.scalar_one())


async def attempts_by_provider(
    session: AsyncSession, *, since: datetime, project_id: uuid.UUID | None
) -> dict[tuple[str, str], int]:
    """Attempts of a project (or every project) ending at or after ``since`` (a bucket
    start), by (provider, outcome)."""
    parts = []
    for table in (ProviderCount, ProviderCountDelta):
        part = select(table.provider, table.outcome, table.attempts.label("n")).where(
            table.bucket >= since
        )
        if project_id is not None:
            part = part.where(table.project_id == project_id)
        parts.append(part)
    # One statement, so one snapshot: a fold committing meanwhile is seen whole or not at all.
    cells = union_all(*parts).subquery()
    stmt = select(cells.c.provider, cells.c.outcome, func.sum(cells.c.n)).group_by(
        cells.c.provider, cells.c.outcome
    )
    return {(provider, outcome): int(n) for provider, outcome, n in await session.execute(stmt)}
