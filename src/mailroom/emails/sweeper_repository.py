"""SQL of the sweeper: its lock, and the emails whose dispatch may have been lost."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from mailroom.emails.models import Email
from mailroom.emails.states import DISPATCHABLE_STATUSES
from mailroom.emails.workers_repository import abandoned as abandoned_claim


@dataclass(frozen=True)
class Stranded:
    email_id: uuid.UUID
    next_attempt: int
    request_id: str | None
    batch_job_id: str | None  # the job carrying its first attempt, if it came in a batch


async def try_sweeper_lock(session: AsyncSession, key: int) -> bool:
    """One sweeper at a time across all workers; released when the transaction ends."""
    result = await session.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": key})
    return bool(result.scalar_one())


async def find_stranded(
    session: AsyncSession, *, grace: timedelta, takeover: timedelta, limit: int
) -> list[Stranded]:
    """Emails whose dispatch may have been lost: overdue, or claimed by a vanished worker
    (lease run out, or heartbeat older than ``takeover``)."""
    overdue = (
        select(Email.id, Email.attempts, Email.request_id, Email.batch_job_id)
        .where(
            Email.status.in_([s.value for s in DISPATCHABLE_STATUSES]),
            Email.next_attempt_at < func.now() - grace,
        )
        .order_by(Email.next_attempt_at)
        .limit(limit)
    )
    abandoned = (
        select(Email.id, Email.attempts, Email.request_id, Email.batch_job_id)
        .where(abandoned_claim(takeover))
        .order_by(Email.lease_expires_at)
        .limit(limit)
    )
    rows: list[Row[Any]] = [*(await session.execute(overdue)), *(await session.execute(abandoned))]
    return [
        Stranded(
            email_id=r.id,
            next_attempt=r.attempts + 1,
            request_id=r.request_id,
            batch_job_id=r.batch_job_id,
        )
        for r in rows
    ]
