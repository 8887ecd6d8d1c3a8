"""Reading the email log: one email with its attempts, pages of the log, today's report.

Everything here only reads, and only what the caller's ``ProjectAccess`` reaches: its
project's emails, counts and report (every project's for an admin key, or the one it
names). ``emails_by_status`` is what the metrics' gauge shows: every project's.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parseaddr

from sqlalchemy.ext.asyncio import AsyncSession

from mailroom.emails import log_repository, recipients
from mailroom.emails.log_query import LogQuery, day_bounds, encode_cursor
from mailroom.emails.log_repository import Listed, LogFilter, Position
from mailroom.emails.message import envelope_recipients
from mailroom.emails.schemas.responses import (
    AttachmentInfo,
    DailySummary,
    DeliveryAttemptItem,
    EmailDetail,
    EmailError,
    EmailEventItem,
    EmailLogItem,
    EmailLogPage,
    FeedbackItem,
    Pagination,
    RecipientState,
)
from mailroom.emails.states import EmailStatus
from mailroom.errors import NotFound
from mailroom.projects.access import ProjectAccess
from mailroom.webhooks.events import email_events


async def get_email(
    session: AsyncSession, email_id: uuid.UUID, *, access: ProjectAccess
) -> EmailDetail:
    """One email with its attempts: a 404 alike for one that does not exist and for one of
    a project the caller does not reach."""
    project_id = await access.project_id(session, None)
    found = await log_repository.get_email(
        session, email_id, project_id=project_id, with_attempts=True
    )
    if found is None:
        raise NotFound(f"No email with id {email_id}")
    email = found.email
    files = (
        await log_repository.attachment_info(session, email_id) if email.attachment_count else []
    )
    events = await email_events(session, email_id)
    envelope = envelope_recipients(email)
    return EmailDetail(
        **log_item(found).model_dump(),
        events=[
            EmailEventItem(id=e.id, type=e.type, timestamp=e.created_at, data=e.data)
            for e in events
        ],
        recipients=[
            RecipientState.model_validate(state)
            for state in recipients.view(email.recipient_states, envelope, email.status)
        ],
        reply_to=email.reply_to,
        text=email.text_body,
        html=email.html_body,
        headers=email.headers,
        request_id=email.request_id,
        attachments=[
            AttachmentInfo(
                filename=f.filename,
                content_type=f.content_type,
                content_id=f.content_id,
                size=f.size,
            )
            for f in files
        ],
        feedback=[
            FeedbackItem(
                recipient=f.recipient,
                kind=f.kind,
                bounce_type=f.bounce_type,
                diagnostic_code=f.diagnostic_code,
                status_code=f.status_code,
                provider=f.provider,
                occurred_at=f.occurred_at,
                received_at=f.received_at,
            )
            for f in await log_repository.feedback_of(session, email_id)
        ],
        delivery_attempts=[
            DeliveryAttemptItem(
                number=a.attempt_number,
                started_at=a.started_at,
                finished_at=a.finished_at,
                outcome=a.outcome,
                code=a.smtp_code,
                enhanced_code=a.enhanced_code,
                message=a.message,
                duration_ms=a.duration_ms,
                refused_recipients=a.refused_recipients,
                provider=a.provider,
            )
            for a in email.delivery_attempts
        ],
    )


def log_item(found: Listed) -> EmailLogItem:
    email = found.email
    has_error = email.last_error_code is not None or email.last_error_message is not None
    return EmailLogItem(
        id=email.id,
        project=found.project,
        sender=email.sender,
        to=email.to_addrs,
        cc=email.cc_addrs,
        bcc=email.bcc_addrs,
        subject=email.subject,
        status=EmailStatus(email.status),
        attempts=email.attempts,
        message_id=email.message_id,
        created_at=email.created_at,
        sent_at=email.sent_at,
        failed_at=email.failed_at,
        cancelled_at=email.cancelled_at,
        send_at=email.send_at,
        next_attempt_at=email.next_attempt_at,
        sandbox=email.sandbox,
        error=EmailError(
            code=email.last_error_code,
            enhanced_code=email.last_error_enhanced,
            message=email.last_error_message,
        )
        if has_error
        else None,
        # `or`: an Email built in Python has no server defaults until it is flushed.
        bounced=bool(email.bounced),
        complained=bool(email.complained),
        suppressed=list(email.suppressed_recipients or ()),
    )


async def list_log(
    session: AsyncSession, query: LogQuery, *, access: ProjectAccess, now: datetime
) -> EmailLogPage:
    project_id = await access.project_id(session, query.project)
    log_filter = query.log_filter(project_id)
    after = query.position()
    page = None if after is not None else (query.page or 1)
    offset = 0 if page is None else (page - 1) * query.limit
    # One row more than asked tells whether another page follows.
    rows = await log_repository.list_emails(
        session, log_filter, limit=query.limit + 1, offset=offset, after=after
    )
    has_more = len(rows) > query.limit
    rows = rows[: query.limit]
    total = await log_repository.count_emails(session, log_filter)
    last = rows[-1] if rows else None
    names = await _project_names(session, {e.project_id for e in rows}, access)
    return EmailLogPage(
        data=[log_item(Listed(e, names[e.project_id])) for e in rows],
        pagination=Pagination(
            page=page,
            limit=query.limit,
            total=total,
            total_pages=math.ceil(total / query.limit),
            has_more=has_more,
            next_cursor=encode_cursor(Position(last.created_at, last.id))
            if has_more and last is not None
            else None,
        ),
        summary=await daily_summary(session, query, project_id=project_id, now=now),
    )


async def _project_names(
    session: AsyncSession, ids: set[uuid.UUID], access: ProjectAccess
) -> dict[uuid.UUID, str]:
    """The names of these projects: the caller's own is known, others are read (an admin's)."""
    known = {access.own.id: access.own.name} if access.own is not None else {}
    missing = ids - known.keys()
    return known | (await log_repository.project_names(session, missing) if missing else {})


async def daily_summary(
    session: AsyncSession, query: LogQuery, *, project_id: uuid.UUID | None, now: datetime
) -> DailySummary:
    zone = query.zone
    today = now.astimezone(zone).date()
    start, end = day_bounds(today, zone)
    counts = await log_repository.count_created_between(session, start, end, project_id=project_id)
    complained = await log_repository.count_complaints_between(
        session, start, end, project_id=project_id
    )
    # A bounced email was sent and then not delivered: the report counts it as failed.
    failed = counts.failed + counts.bounced
    return DailySummary(
        date=today.isoformat(),
        timezone=query.tz,
        total=counts.total,
        sent=counts.sent,
        failed=failed,
        cancelled=counts.cancelled,
        bounced=counts.bounced,
        complained=complained,
        suppressed=counts.suppressed,
        pending=counts.total - counts.sent - failed - counts.cancelled - counts.suppressed,
    )


async def emails_by_status(session: AsyncSession) -> dict[str, int]:
    """Emails present in each status, every project's (from the counters, as
    ``pagination.total``)."""
    # One snapshot for every status, so that they add up to the emails present.
    await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    return {
        status.value: await log_repository.count_emails(
            session, LogFilter(project_id=None, statuses=(status,))
        )
        for status in EmailStatus
    }


async def emails_by_project(session: AsyncSession) -> dict[uuid.UUID, int]:
    """Emails present in each project (for `mailroom projects list`)."""
    return await log_repository.emails_by_project(session)


@dataclass(frozen=True)
class Criteria:
    """What a reader of the log (the dashboard) selects: every field optional."""

    statuses: tuple[EmailStatus, ...] = ()
    recipient: str | None = None
    sender_contains: str | None = None
    subject_contains: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def matches(self, item: EmailLogItem) -> bool:
        """Whether the log filter these criteria make would select ``item`` (any project)."""
        if self.statuses and item.status not in self.statuses:
            return False
        if self.recipient is not None and self.recipient not in {
            parseaddr(a)[1].lower() for a in (*item.to, *item.cc, *item.bcc)
        }:
            return False
        if self.sender_contains is not None and (
            self.sender_contains.lower() not in item.sender.lower()
        ):
            return False
        if self.subject_contains is not None and (
            self.subject_contains.lower() not in item.subject.lower()
        ):
            return False
        if self.since is not None and item.created_at < self.since:
            return False
        return self.until is None or item.created_at < self.until

    def log_filter(self, project_id: uuid.UUID | None) -> LogFilter:
        return LogFilter(
            project_id=project_id,
            statuses=self.statuses,
            recipient=self.recipient,
            sender_contains=self.sender_contains,
            subject_contains=self.subject_contains,
            since=self.since,
            until=self.until,
        )


@dataclass(frozen=True)
class Browsed:
    items: list[EmailLogItem]
    next_cursor: str | None  # the page after this one, if any


async def browse(
    session: AsyncSession,
    criteria: Criteria,
    *,
    access: ProjectAccess,
    project: str | None,
    after: Position | None,
    limit: int,
) -> Browsed:
    """A page of the log, newest first, by keyset only and without counting (so that a
    text filter, matched row by row, costs only the rows a page needs)."""
    project_id = await access.project_id(session, project)
    rows = await log_repository.list_emails(
        session, criteria.log_filter(project_id), limit=limit + 1, after=after
    )
    names = await _project_names(session, {e.project_id for e in rows[:limit]}, access)
    items = [log_item(Listed(e, names[e.project_id])) for e in rows[:limit]]
    last = rows[limit - 1] if len(rows) > limit else None
    return Browsed(
        items, encode_cursor(Position(last.created_at, last.id)) if last is not None else None
    )


async def newer(
    session: AsyncSession,
    criteria: Criteria,
    *,
    access: ProjectAccess,
    project: str | None,
    than: Position,
    limit: int,
) -> list[EmailLogItem]:
    """The emails the criteria select created after ``than``, oldest first (what a live
    view of the log's first page adds)."""
    project_id = await access.project_id(session, project)
    rows = await log_repository.list_newer(
        session, criteria.log_filter(project_id), than=than, limit=limit
    )
    names = await _project_names(session, {e.project_id for e in rows}, access)
    return [log_item(Listed(e, names[e.project_id])) for e in rows]


async def emails_now(
    session: AsyncSession, ids: set[uuid.UUID], *, access: ProjectAccess, project: str | None
) -> list[EmailLogItem]:
    """These emails as they are now (those the caller reaches; the others left out)."""
    project_id = await access.project_id(session, project)
    rows = await log_repository.emails_by_ids(session, ids, project_id=project_id)
    names = await _project_names(session, {e.project_id for e in rows}, access)
    return [log_item(Listed(e, names[e.project_id])) for e in rows]


EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # before any email


async def latest(session: AsyncSession) -> Position | None:
    """Where the newest email of every project is in the log's order (None: it is empty)."""
    rows = await log_repository.list_emails(session, LogFilter(project_id=None), limit=1)
    return Position(rows[0].created_at, rows[0].id) if rows else None
