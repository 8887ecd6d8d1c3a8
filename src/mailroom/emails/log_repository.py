"""SQL of the email log: one email, pages of emails, counts and the daily report.

Counts come from the counters (migrations 0003 and 0006) where a filter allows, so a
total or a report costs a few hundred small rows, not a scan of the emails.

Every function here takes the project to look at (None: every project's emails, for a
caller that reaches them all): a caller confined to a project never gets a row, nor a
count, of another's.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import exists, func, select, text, tuple_, union_all
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from mailroom.db.text_search import contains
from mailroom.emails import buckets
from mailroom.emails.models import (
    DeliveryAttempt,
    DeliveryFeedback,
    Email,
    EmailAttachment,
    EmailCount,
    EmailCountDelta,
    EmailStatusTotal,
)
from mailroom.emails.states import EmailStatus
from mailroom.projects.models import Project

# The project's name of one email read alone (a page of the log gets its names apart,
# see project_names: a subquery in its select list would also run for every row an OFFSET
# skips).
PROJECT_NAME = (
    select(Project.name).where(Project.id == Email.project_id).scalar_subquery().label("project")
)


@dataclass(frozen=True)
class Listed:
    """An email as read for a caller, with its project's name."""

    email: Email
    project: str


async def get_email(
    session: AsyncSession,
    email_id: uuid.UUID,
    *,
    project_id: uuid.UUID | None,
    with_attempts: bool = False,
) -> Listed | None:
    """The email, if it is ``project_id``'s (any project's if None)."""
    stmt = select(Email, PROJECT_NAME).where(Email.id == email_id)
    if project_id is not None:
        stmt = stmt.where(Email.project_id == project_id)
    if with_attempts:
        stmt = stmt.options(selectinload(Email.delivery_attempts))
    row = (await session.execute(stmt)).one_or_none()
    return Listed(row[0], row[1]) if row is not None else None


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


@dataclass(frozen=True, kw_only=True)
class LogFilter:
    # Whose emails: one project's, or (None) every project's. No default, so that no
    # query on emails can leave it out by accident.
    project_id: uuid.UUID | None
    statuses: tuple[EmailStatus, ...] = ()
    recipient: str | None = None
    provider: str | None = None  # emails with an attempt through it
    since: datetime | None = None
    until: datetime | None = None
    # The last error's class: "4xx", "5xx" (SMTP reply codes) or "connection" (none).
    error_class: str | None = None
    # Text the sender or the subject contains, case-insensitively (the dashboard's filters,
    # through the trigram indexes where the text allows: see db.text_search; only listed,
    # never counted).
    sender_contains: str | None = None
    subject_contains: str | None = None

    def clauses(self) -> list[Any]:
        where: list[Any] = []
        if self.sender_contains is not None:
            where.append(contains(Email.sender, self.sender_contains))
        if self.subject_contains is not None:
            where.append(contains(Email.subject, self.subject_contains))
        if self.project_id is not None:
            where.append(Email.project_id == self.project_id)
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
        if self.provider is not None:
            where.append(
                exists().where(
                    DeliveryAttempt.provider == self.provider, DeliveryAttempt.email_id == Email.id
                )
            )
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


async def project_names(session: AsyncSession, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
    stmt = select(Project.id, Project.name).where(Project.id.in_(set(ids)))
    return {row.id: row.name for row in await session.execute(stmt)}


async def count_emails(session: AsyncSession, log_filter: LogFilter) -> int:
    """How many emails match: from the counters, plus rows at unaligned edges."""
    if (
        log_filter.recipient is not None
        or log_filter.error_class is not None
        or log_filter.sender_contains is not None
        or log_filter.subject_contains is not None
        or log_filter.provider is not None
    ):
        # The counters know nothing of recipients, errors, providers or texts; count the rows.
        return await _count_rows(session, log_filter)
    statuses = [s.value for s in log_filter.statuses]
    since, until = log_filter.since, log_filter.until
    project_id = log_filter.project_id
    if since is None and until is None:
        present = union_all(
            _of_project(
                select(EmailStatusTotal.status, EmailStatusTotal.present.label("n")),
                EmailStatusTotal.project_id,
                project_id,
            ),
            _of_project(
                select(EmailCountDelta.status, EmailCountDelta.present.label("n")),
                EmailCountDelta.project_id,
                project_id,
            ),
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
        EmailCount.created - EmailCount.purged,
        EmailCountDelta.created - EmailCountDelta.purged,
        project_id,
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


def _of_project(stmt: Any, column: Any, project_id: uuid.UUID | None) -> Any:
    return stmt if project_id is None else stmt.where(column == project_id)


def _cells(folded: Any, unfolded: Any, project_id: uuid.UUID | None) -> Any:
    """(bucket, status, n) of a project (or every one) from the folded counts and the
    deltas not folded yet.

    Read in one statement, so one snapshot: a fold that commits meanwhile is seen
    entirely or not at all, never counted twice or missed. The project is filtered
    inside each branch, so that a project's cells come from its part of the primary key.
    """
    return union_all(
        _of_project(
            select(EmailCount.bucket, EmailCount.status, folded.label("n")),
            EmailCount.project_id,
            project_id,
        ),
        _of_project(
            select(EmailCountDelta.bucket, EmailCountDelta.status, unfolded.label("n")),
            EmailCountDelta.project_id,
            project_id,
        ),
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
    bounced: int = 0
    suppressed: int = 0


async def count_created_between(
    session: AsyncSession, start: datetime, end: datetime, *, project_id: uuid.UUID | None
) -> StatusCounts:
    """Counts by status of the emails of a project (or every project) created in
    [start, end), purged ones included."""
    if buckets.floor(start) != start or buckets.floor(end) != end:
        # Not a day of any zone in use today (those are whole buckets): count the rows
        # (purged ones are then left out).
        exact = select(
            func.count(),
            func.count().filter(Email.status == EmailStatus.SENT.value),
            func.count().filter(Email.status == EmailStatus.FAILED.value),
            func.count().filter(Email.status == EmailStatus.CANCELLED.value),
            func.count().filter(Email.status == EmailStatus.BOUNCED.value),
            func.count().filter(Email.status == EmailStatus.SUPPRESSED.value),
        ).where(*LogFilter(project_id=project_id, since=start, until=end).clauses())
        total, sent, failed, cancelled, bounced, suppressed = (await session.execute(exact)).one()
        return StatusCounts(total, sent, failed, cancelled, bounced, suppressed)
    cells = _cells(EmailCount.created, EmailCountDelta.created, project_id)
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
        bounced=by_status.get(EmailStatus.BOUNCED.value, 0),
        suppressed=by_status.get(EmailStatus.SUPPRESSED.value, 0),
    )


async def count_complaints_between(
    session: AsyncSession, start: datetime, end: datetime, *, project_id: uuid.UUID | None
) -> int:
    """Emails of a project (or every project) complained about in [start, end).

    Counted from the feedback received then (complaints are few), not by scanning the
    day's emails.
    """
    stmt = select(func.count(func.distinct(DeliveryFeedback.email_id))).where(
        DeliveryFeedback.kind == "complained",
        DeliveryFeedback.email_id.is_not(None),
        DeliveryFeedback.received_at >= start,
        DeliveryFeedback.received_at < end,
    )
    if project_id is not None:
        stmt = stmt.where(DeliveryFeedback.project_id == project_id)
    return int((await session.execute(stmt)).scalar_one())


async def feedback_of(session: AsyncSession, email_id: uuid.UUID) -> list[DeliveryFeedback]:
    stmt = (
        select(DeliveryFeedback)
        .where(DeliveryFeedback.email_id == email_id)
        .order_by(DeliveryFeedback.received_at, DeliveryFeedback.id)
    )
    return list((await session.execute(stmt)).scalars())


async def emails_by_project(session: AsyncSession) -> dict[uuid.UUID, int]:
    """Emails present in each project (from the counters; projects without any left out)."""
    present = union_all(
        select(EmailStatusTotal.project_id, EmailStatusTotal.present.label("n")),
        select(EmailCountDelta.project_id, EmailCountDelta.present.label("n")),
    ).subquery()
    stmt = (
        select(present.c.project_id, func.sum(present.c.n))
        .group_by(present.c.project_id)
        .having(func.sum(present.c.n) != 0)
    )
    return {project_id: int(n) for project_id, n in await session.execute(stmt)}


async def fold_counts(session: AsyncSession) -> int:
    """Fold the counter deltas into the counters (see migration 0003); returns how many.

    One process at a time folds (the function takes an advisory lock); the others get 0.
    """
    result = await session.execute(text("SELECT mailroom_fold_counts()"))
    return int(result.scalar_one())


def counter_cells(project_id: uuid.UUID | None) -> Any:
    """(bucket, status, n) of the emails created, purged ones included: what the
    report's charts read (see report_repository)."""
    return _cells(EmailCount.created, EmailCountDelta.created, project_id)


async def list_newer(
    session: AsyncSession, log_filter: LogFilter, *, than: Position, limit: int
) -> list[Email]:
    """The emails after ``than`` in the newest-first order's reverse: oldest first."""
    stmt = (
        select(Email)
        .where(*log_filter.clauses())
        .where(tuple_(Email.created_at, Email.id) > tuple_(than.created_at, than.id))
        .order_by(Email.created_at, Email.id)
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars())


async def emails_by_ids(
    session: AsyncSession, ids: Iterable[uuid.UUID], *, project_id: uuid.UUID | None
) -> list[Email]:
    stmt = select(Email).where(Email.id.in_(set(ids)))
    if project_id is not None:
        stmt = stmt.where(Email.project_id == project_id)
    return list((await session.execute(stmt)).scalars())
