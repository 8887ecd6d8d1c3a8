"""SQL of the email log: one email, pages of emails, counts and the daily report.

Counts come from the counters (migration 0003) where a filter allows, so a total or
a report costs a few hundred small rows, not a scan of the emails.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text, tuple_, union_all
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from mailroom.emails import buckets
from mailroom.emails.models import (
    Email,
    EmailAttachment,
    EmailCount,
    EmailCountDelta,
    EmailStatusTotal,
)
from mailroom.emails.states import EmailStatus


async def get_email(
    session: AsyncSession, email_id: uuid.UUID, *, with_attempts: bool = False
) -> Email | None:
    stmt = select(Email).where(Email.id == email_id)
    if with_attempts:
        stmt = stmt.options(selectinload(Email.delivery_attempts))
    result = await session.execute(stmt)
    return result.scalar_one_or_none()


async def attachment_info(session: AsyncSession, email_id: uuid.UUID) -> list[Any]:
    """Name, type, id and size of each attachment: never the content."""
    stmt = (
        select(
            EmailAttachment.filename,
            EmailAttachment.content_type,
            EmailAttachment.content_id,
            EmailAttachment.size,
        )
        .where(EmailAttachment.email_id == email_id)
        .order_by(EmailAttachment.position)
    )
    return list(await session.execute(stmt))


@dataclass(frozen=True)
class LogFilter:
    statuses: tuple[EmailStatus, ...] = ()
    recipient: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    # The last error's class: "4xx", "5xx" (SMTP reply codes) or "connection" (none).
    error_class: str | None = None

    def clauses(self) -> list[Any]:
        where: list[Any] = []
        if self.error_class == "connection":
            where.append(Email.last_error_code.is_(None))
            where.append(Email.last_error_message.is_not(None))
        elif self.error_class is not None:
            low = int(self.error_class[0]) * 100
            where.append(Email.last_error_code.between(low, low + 99))
        if self.statuses:
            where.append(Email.status.in_([s.value for s in self.statuses]))
        if self.recipient is not None:
            where.append(Email.recipients.contains([self.recipient.lower()]))
        if self.since is not None:
            where.append(Email.created_at >= self.since)
        if self.until is not None:
            where.append(Email.created_at < self.until)
        return where


@dataclass(frozen=True)
class Position:
    """A place in the newest-first order: rows strictly older than it come next."""

    created_at: datetime
    id: uuid.UUID


async def list_emails(
    session: AsyncSession,
    log_filter: LogFilter,
    *,
    limit: int,
    offset: int = 0,
    after: Position | None = None,
) -> list[Email]:
    stmt = select(Email).where(*log_filter.clauses())
    if after is not None:
        # Keyset pagination: cost does not grow with depth, and rows inserted
        # meanwhile (always newer) cannot shift the pages that follow.
        stmt = stmt.where(tuple_(Email.created_at, Email.id) < tuple_(after.created_at, after.id))
    stmt = stmt.order_by(Email.created_at.desc(), Email.id.desc()).offset(offset).limit(limit)
    return list((await session.execute(stmt)).scalars())


async def count_emails(session: AsyncSession, log_filter: LogFilter) -> int:
    """How many emails match: from the counters, plus rows at unaligned edges."""
    if log_filter.recipient is not None or log_filter.error_class is not None:
        # The counters know nothing of recipients or errors; count the rows.
        return await _count_rows(session, log_filter)
    statuses = [s.value for s in log_filter.statuses]
    since, until = log_filter.since, log_filter.until
    if since is None and until is None:
        present = union_all(
            select(EmailStatusTotal.status, EmailStatusTotal.present.label("n")),
            select(EmailCountDelta.status, EmailCountDelta.present.label("n")),
        ).subquery()
        totals = select(func.coalesce(func.sum(present.c.n), 0))
        if statuses:
            totals = totals.where(present.c.status.in_(statuses))
        return int((await session.execute(totals)).scalar_one())
    inner_start = buckets.ceil(since) if since is not None else None
    inner_end = buckets.floor(until) if until is not None else None
    if inner_start is not None and inner_end is not None and inner_start >= inner_end:
        return await _count_rows(session, log_filter)  # less than one whole bucket
    cells = _cells(
        EmailCount.created - EmailCount.purged, EmailCountDelta.created - EmailCountDelta.purged
    )
    whole = select(func.coalesce(func.sum(cells.c.n), 0))
    if statuses:
        whole = whole.where(cells.c.status.in_(statuses))
    if inner_start is not None:
        whole = whole.where(cells.c.bucket >= inner_start)
    if inner_end is not None:
        whole = whole.where(cells.c.bucket < inner_end)
    total = int((await session.execute(whole)).scalar_one())
    if since is not None and inner_start is not None and since < inner_start:
        total += await _count_rows(session, replace(log_filter, until=inner_start))
    if until is not None and inner_end is not None and inner_end < until:
        total += await _count_rows(session, replace(log_filter, since=inner_end))
    return total


def _cells(folded: Any, unfolded: Any) -> Any:
    """(bucket, status, n) from the folded counts and the deltas not folded yet.

    Read in one statement, so one snapshot: a fold that commits meanwhile is seen
    entirely or not at all, never counted twice or missed.
    """
    return union_all(
        select(EmailCount.bucket, EmailCount.status, folded.label("n")),
        select(EmailCountDelta.bucket, EmailCountDelta.status, unfolded.label("n")),
    ).subquery()


async def _count_rows(session: AsyncSession, log_filter: LogFilter) -> int:
    stmt = select(func.count()).select_from(Email).where(*log_filter.clauses())
    return int((await session.execute(stmt)).scalar_one())


@dataclass(frozen=True)
class StatusCounts:
    total: int
    sent: int
    failed: int
    cancelled: int = 0


async def count_created_between(
    session: AsyncSession, start: datetime, end: datetime
) -> StatusCounts:
    """Counts by status of the emails created in [start, end), purged ones included."""
    if buckets.floor(start) != start or buckets.floor(end) != end:
        # Not a day of any zone in use today (those are whole buckets): count the rows
        # (purged ones are then left out).
        exact = select(
            func.count(),
            func.count().filter(Email.status == EmailStatus.SENT.value),
            func.count().filter(Email.status == EmailStatus.FAILED.value),
            func.count().filter(Email.status == EmailStatus.CANCELLED.value),
        ).where(Email.created_at >= start, Email.created_at < end)
        total, sent, failed, cancelled = (await session.execute(exact)).one()
        return StatusCounts(total=total, sent=sent, failed=failed, cancelled=cancelled)
    cells = _cells(EmailCount.created, EmailCountDelta.created)
    stmt = (
        select(cells.c.status, func.sum(cells.c.n))
        .where(cells.c.bucket >= start, cells.c.bucket < end)
        .group_by(cells.c.status)
    )
    by_status = {status: int(n) for status, n in await session.execute(stmt)}
    return StatusCounts(
        total=sum(by_status.values()),
        sent=by_status.get(EmailStatus.SENT.value, 0),
        failed=by_status.get(EmailStatus.FAILED.value, 0),
        cancelled=by_status.get(EmailStatus.CANCELLED.value, 0),
    )


async def fold_counts(session: AsyncSession) -> int:
    """Fold the counter deltas into the counters (see migration 0003); returns how many.

    One process at a time folds (the function takes an advisory lock); the others get 0.
    """
    result = await session.execute(text("SELECT mailroom_fold_counts()"))
    return int(result.scalar_one())
