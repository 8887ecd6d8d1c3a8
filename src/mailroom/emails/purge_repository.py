"""SQL of the retention purge (``emails.retention``). Functions flush, never commit.

Each function works on one status at a time: the selection is then a range of
``ix_emails_status_created_at_id (status, created_at, id)`` read in index order, so a
batch costs the rows it deletes, not a sort of every old email. Only final statuses
are accepted, whatever the caller asks.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from mailroom.emails.models import Email
from mailroom.emails.states import EmailStatus

# The oldest emails of one status first; rows another transaction holds (a worker
# recording an attempt, a retry moving a failed email) are skipped, never waited for.
# `id = ANY(ARRAY(subquery))` makes the selection an InitPlan that runs exactly once,
# then deletes by primary key. (As `id IN (subquery)` the planner may rescan the
# subquery, and each rescan, skipping the rows this statement already deleted, hands
# over the next ones: a batch of 2 deleted 5. As a CTE joined back on status and
# created_at, it hash-joined every old email of the status for each batch.)
# The DELETE checks the status again on the row as it is now (the row lock re-reads a
# row changed since the statement began), so an email that left the final state
# meanwhile, a failed email retried, is not deleted. delivery_attempts,
# email_attachments and idempotency_keys follow by ON DELETE CASCADE; the counter
# trigger (migration 0003) keeps `created` and counts the rows as `purged`.
_DELETE_BATCH = text(
    """
    DELETE FROM emails
    WHERE id = ANY(ARRAY(
        SELECT id FROM emails
        WHERE status = :status AND created_at < :before
        ORDER BY created_at, id
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    ))
    AND status = :status
    RETURNING id
    """
)


def _final(status: EmailStatus) -> str:
    if not status.is_final:
        raise ValueError(f"{status.value!r} is not a final status; only final emails are purged")
    return status.value


async def delete_batch(
    session: AsyncSession, *, status: EmailStatus, before: datetime, limit: int
) -> int:
    """Delete up to ``limit`` emails in ``status`` created before ``before``; how many."""
    result = await session.execute(
        _DELETE_BATCH, {"status": _final(status), "before": before, "limit": limit}
    )
    return len(result.all())


async def count_older(session: AsyncSession, *, status: EmailStatus, before: datetime) -> int:
    """How many emails in ``status`` were created before ``before`` (an index-only scan)."""
    stmt = (
        select(func.count())
        .select_from(Email)
        .where(Email.status == _final(status), Email.created_at < before)
    )
    return int((await session.execute(stmt)).scalar_one())


async def try_purge_lock(session: AsyncSession, key: int) -> bool:
    """One purger at a time across all workers; released when the transaction ends."""
    result = await session.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": key})
    return bool(result.scalar_one())
