"""SQL for the email log. Functions flush, never commit: the unit of work commits.

Every status change is one guarded ``UPDATE … WHERE status IN (…)``; the sources
come from ``states`` so the SQL and the state machine cannot drift apart.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, func, insert, or_, select, text, tuple_, union_all, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from mailroom.emails import buckets
from mailroom.emails.attachments import Attachment
from mailroom.emails.models import (
    DeliveryAttempt,
    Email,
    EmailAttachment,
    EmailCount,
    EmailCountDelta,
    EmailStatusTotal,
)
from mailroom.emails.states import (
    CANCEL,
    CLAIM,
    DEFER,
    DELIVER,
    DISPATCHABLE_STATUSES,
    FAIL,
    RECLAIMABLE_STATUS,
    RETRY,
    EmailStatus,
    Transition,
)

_CLAIM_SOURCES = sorted(s.value for s in CLAIM.sources)
# A job may fire a little before its email is due (BullMQ rounds delays, clocks differ);
# anything earlier than this is a stale duplicate and must not cut the backoff short. A
# scheduled email claimed early still waits for its sendAt (the worker's _not_before).
EARLY_CLAIM_SLACK = timedelta(seconds=2)


async def add_emails(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Insert new emails (column values, every one given) in one statement."""
    if rows:
        # A Core insert: no ORM identity bookkeeping on the request path.
        await session.execute(insert(Email), list(rows))


async def add_attachments(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await session.execute(insert(EmailAttachment), list(rows))


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


async def load_attachments(
    session: AsyncSession, email_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, tuple[Attachment, ...]]:
    """Each email's attachments, in order, with their bytes (for building the message)."""
    if not email_ids:
        return {}
    stmt = (
        select(
            EmailAttachment.email_id,
            EmailAttachment.filename,
            EmailAttachment.content_type,
            EmailAttachment.content,
            EmailAttachment.content_id,
        )
        .where(EmailAttachment.email_id.in_(email_ids))
        .order_by(EmailAttachment.email_id, EmailAttachment.position)
    )
    found: dict[uuid.UUID, list[Attachment]] = {}
    for row in await session.execute(stmt):
        found.setdefault(row.email_id, []).append(
            Attachment(row.filename, row.content_type, row.content, row.content_id)
        )
    return {email_id: tuple(items) for email_id, items in found.items()}


async def get_email(
    session: AsyncSession, email_id: uuid.UUID, *, with_attempts: bool = False
) -> Email | None:
    stmt = select(Email).where(Email.id == email_id)
    if with_attempts:
        stmt = stmt.options(selectinload(Email.delivery_attempts))
    result = await session.execute(stmt)
    return result.scalar_one_or_none()


@dataclass(frozen=True)
class Claimed:
    """An email a worker now owns, with the attempt it is about to make."""

    email: Email
    attempt: int
    reclaimed: bool  # taken over from a worker whose lease expired
    attachments: tuple[Attachment, ...] = ()


async def claim(
    session: AsyncSession, email_ids: Sequence[uuid.UUID], lease: timedelta
) -> list[Claimed]:
    """Move the claimable ones of these emails to ``sending``, for one attempt each."""
    if not email_ids:
        return []
    target = (
        select(
            Email.id,
            Email.status.label("previous_status"),
            Email.updated_at.label("previous_claim_at"),
        )
        .where(
            Email.id.in_(email_ids),
            or_(
                and_(
                    Email.status.in_(_CLAIM_SOURCES),
                    or_(
                        Email.next_attempt_at.is_(None),
                        Email.next_attempt_at <= func.now() + EARLY_CLAIM_SLACK,
                    ),
                ),
                and_(
                    Email.status == RECLAIMABLE_STATUS.value,
                    Email.lease_expires_at < func.now(),
                ),
            ),
        )
        # Rows locked in id order, as every writer of several emails does (see _FINISH):
        # overlapping batches cannot deadlock. NO KEY UPDATE, the lock an UPDATE takes,
        # does not wait on the key-share locks of attempt inserts.
        .order_by(Email.id)
        .with_for_update(key_share=True)
        .cte("target")
    )
    table = cast(Table, Email.__table__)
    stmt = (
        update(table)
        .where(table.c.id == target.c.id)
        .values(
            status=CLAIM.target.value,
            attempts=table.c.attempts + 1,
            lease_expires_at=func.now() + lease,
            next_attempt_at=None,
            updated_at=func.now(),
        )
        .returning(*table.c, target.c.previous_status, target.c.previous_claim_at)
    )
    # A Core statement: the worker needs the values, not the ORM's identity map and
    # change tracking (which cost more than the UPDATE itself).
    result = await session.execute(stmt)
    rows = [
        (_email(row), row["previous_status"], row["previous_claim_at"]) for row in result.mappings()
    ]
    claimed = [
        Claimed(email=email, attempt=email.attempts, reclaimed=previous == RECLAIMABLE_STATUS.value)
        for email, previous, _ in rows
    ]
    now = datetime.now(UTC)
    interrupted = [
        {
            "email_id": email.id,
            "attempt_number": email.attempts - 1,
            "started_at": previous_claim_at,
            "finished_at": now,
            "outcome": "interrupted",
            "duration_ms": 0,
            "message": (
                "The worker stopped during this attempt; the server may or may not "
                "have accepted the message."
            ),
        }
        for email, previous, previous_claim_at in rows
        if previous == RECLAIMABLE_STATUS.value
    ]
    if interrupted:
        # The previous attempt's worker vanished mid-send: record that it happened.
        await session.execute(_insert_attempt(), interrupted)
    return claimed


# Rows locked elsewhere (an attempt being recorded right now) are skipped, never waited
# for: a renewal holds nothing worth waiting for, and the record ends the lease anyway.
# = ANY(ARRAY(…)) runs the selection once.
_RENEW = text(
    """
    UPDATE emails SET lease_expires_at = now() + CAST(:lease AS interval)
    WHERE id = ANY(ARRAY(
        SELECT e.id FROM emails AS e
        JOIN unnest(CAST(:ids AS uuid[]), CAST(:attempts AS integer[])) AS h(id, attempt)
            ON e.id = h.id AND e.attempts = h.attempt
        WHERE e.status = :sending
        FOR NO KEY UPDATE OF e SKIP LOCKED
    ))
    """
)


async def renew_leases(
    session: AsyncSession, held: Sequence[tuple[uuid.UUID, int]], lease: timedelta
) -> None:
    """Extend the leases of emails this worker still holds (the same attempt, still sending)."""
    if held:
        await session.execute(
            _RENEW,
            {
                "ids": [email_id for email_id, _ in held],
                "attempts": [attempt for _, attempt in held],
                "lease": lease,
                "sending": RECLAIMABLE_STATUS.value,
            },
        )


def _email(row: Any) -> Email:
    """A detached Email from a row holding every column of the table."""
    return Email(**{c.key: row[c.name] for c in _EMAILS.c})


_EMAILS = cast(Table, Email.__table__)


async def _move(
    session: AsyncSession, email_id: uuid.UUID, transition: Transition, **values: Any
) -> Email | None:
    """One guarded transition of one email; None if its status does not allow it."""
    stmt = (
        update(_EMAILS)
        .where(
            _EMAILS.c.id == email_id,
            _EMAILS.c.status.in_([s.value for s in transition.sources]),
        )
        .values(status=transition.target.value, updated_at=func.now(), **values)
        .returning(*_EMAILS.c)
    )
    row = (await session.execute(stmt)).mappings().one_or_none()
    return _email(row) if row is not None else None


async def cancel(session: AsyncSession, email_id: uuid.UUID) -> Email | None:
    """Cancel an email no worker holds; a job still in Redis for it finds nothing to claim."""
    return await _move(session, email_id, CANCEL, cancelled_at=func.now(), next_attempt_at=None)


async def retry(session: AsyncSession, email_id: uuid.UUID) -> Email | None:
    """Put a failed email back in the queue, with a fresh budget of attempts."""
    return await _move(
        session,
        email_id,
        RETRY,
        failed_at=None,
        next_attempt_at=func.now(),
        attempts_before_retry=_EMAILS.c.attempts,
        **_NO_ERROR,
    )


# A retried email's error belongs to its earlier attempts (still listed with them).
_NO_ERROR: dict[str, Any] = {
    "last_error_code": None,
    "last_error_enhanced": None,
    "last_error_message": None,
}


@dataclass(frozen=True)
class Requeued:
    email_id: uuid.UUID
    next_attempt: int
    request_id: str | None


async def requeue_failed(
    session: AsyncSession, log_filter: LogFilter, *, limit: int
) -> list[Requeued]:
    """Retry up to ``limit`` failed emails matching the filter, oldest first."""
    failed = [s.value for s in RETRY.sources]
    chosen = (
        select(_EMAILS.c.id)
        .where(*log_filter.clauses(), _EMAILS.c.status.in_(failed))
        .order_by(_EMAILS.c.created_at, _EMAILS.c.id)
        .limit(limit)
        # Rows another transaction holds are left for the next batch, not waited on.
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    stmt = (
        update(_EMAILS)
        # = ANY(ARRAY(…)): the selection runs once. With IN (…) PostgreSQL may rerun it
        # per row, each rerun skipping the rows already locked and taking more: the
        # LIMIT would not hold.
        .where(_EMAILS.c.id == func.any(func.array(chosen)), _EMAILS.c.status.in_(failed))
        .values(
            status=RETRY.target.value,
            updated_at=func.now(),
            failed_at=None,
            next_attempt_at=func.now(),
            attempts_before_retry=_EMAILS.c.attempts,
            **_NO_ERROR,
        )
        .returning(_EMAILS.c.id, _EMAILS.c.attempts, _EMAILS.c.request_id)
    )
    return [
        Requeued(email_id=r.id, next_attempt=r.attempts + 1, request_id=r.request_id)
        for r in await session.execute(stmt)
    ]


@dataclass(frozen=True)
class AttemptRecord:
    number: int
    started_at: datetime
    finished_at: datetime
    outcome: str
    smtp_code: int | None
    enhanced_code: str | None
    message: str | None
    refused_recipients: list[dict[str, Any]] | None


@dataclass(frozen=True)
class LastError:
    code: int | None
    enhanced_code: str | None
    message: str | None


@dataclass(frozen=True)
class Finished:
    """One attempt to record, and where it moves its email."""

    email_id: uuid.UUID
    transition: Transition
    attempt: AttemptRecord
    error: LastError | None
    next_attempt_at: datetime | None = None


# Every transition out of an attempt starts from ``sending`` (see states), which lets
# one statement move a whole batch of emails whatever each one's outcome.
_FINISH_SOURCE = EmailStatus.SENDING
assert all(t.sources == {_FINISH_SOURCE} for t in (DELIVER, DEFER, FAIL))

# The emails are locked first, in id order, like the claim's: a claim that has already
# locked (and skipped) some of them waits on this statement instead of forming a cycle
# with it. Without the ordered lock the UPDATE took rows in the join's order, and a
# claim holding one of them while waiting on another deadlocked with it.
_FINISH = text(
    """
    WITH locked AS MATERIALIZED (
        SELECT id FROM emails WHERE id = ANY(CAST(:ids AS uuid[]))
        ORDER BY id
        FOR NO KEY UPDATE
    )
    UPDATE emails AS e SET
        status = v.status,
        lease_expires_at = NULL,
        next_attempt_at = v.next_attempt_at,
        updated_at = now(),
        last_error_code = v.error_code,
        last_error_enhanced = v.error_enhanced,
        last_error_message = v.error_message,
        sent_at = CASE WHEN v.status = 'sent' THEN v.finished_at ELSE e.sent_at END,
        failed_at = CASE WHEN v.status = 'failed' THEN v.finished_at ELSE e.failed_at END
    FROM unnest(
        CAST(:ids AS uuid[]), CAST(:attempts AS integer[]), CAST(:statuses AS text[]),
        CAST(:next_attempt_at AS timestamptz[]), CAST(:finished_at AS timestamptz[]),
        CAST(:error_code AS integer[]), CAST(:error_enhanced AS text[]),
        CAST(:error_message AS text[])
    ) AS v(id, attempt, status, next_attempt_at, finished_at, error_code, error_enhanced,
           error_message)
    JOIN locked ON locked.id = v.id
    WHERE e.id = v.id AND e.status = :source AND e.attempts = v.attempt
    RETURNING e.id
    """
)

# Attempts are append-only: one row per (email, attempt number), never rewritten.
_RECORD_ATTEMPTS = text(
    """
    INSERT INTO delivery_attempts (email_id, attempt_number, started_at, finished_at, outcome,
        smtp_code, enhanced_code, message, duration_ms, refused_recipients)
    SELECT id, attempt, started_at, finished_at, outcome, code, enhanced, message, duration_ms,
        CAST(refused AS jsonb)
    FROM unnest(
        CAST(:ids AS uuid[]), CAST(:attempts AS integer[]), CAST(:started_at AS timestamptz[]),
        CAST(:finished_at AS timestamptz[]), CAST(:outcomes AS text[]),
        CAST(:codes AS integer[]), CAST(:enhanced AS text[]), CAST(:messages AS text[]),
        CAST(:durations AS integer[]), CAST(:refused AS text[])
    ) AS u(id, attempt, started_at, finished_at, outcome, code, enhanced, message,
           duration_ms, refused)
    ON CONFLICT (email_id, attempt_number) DO NOTHING
    """
)


async def finish_attempts(session: AsyncSession, finished: Sequence[Finished]) -> set[uuid.UUID]:
    """Record the attempts and move their emails on, in two statements.

    Returns the emails this worker still owned; the others were taken over by a worker
    that found the lease expired, and it has already recorded this attempt as
    interrupted (the conflict clause keeps that row and drops this one).
    """
    if not finished:
        return set()
    errors = [f.error for f in finished]
    moved = await session.execute(
        _FINISH,
        {
            "ids": [f.email_id for f in finished],
            "attempts": [f.attempt.number for f in finished],
            "statuses": [f.transition.target.value for f in finished],
            "next_attempt_at": [f.next_attempt_at for f in finished],
            "finished_at": [f.attempt.finished_at for f in finished],
            "error_code": [e.code if e else None for e in errors],
            "error_enhanced": [e.enhanced_code if e else None for e in errors],
            "error_message": [e.message if e else None for e in errors],
            "source": _FINISH_SOURCE.value,
        },
    )
    owned = {row[0] for row in moved}
    attempts = [f.attempt for f in finished]
    await session.execute(
        _RECORD_ATTEMPTS,
        {
            "ids": [f.email_id for f in finished],
            "attempts": [a.number for a in attempts],
            "started_at": [a.started_at for a in attempts],
            "finished_at": [a.finished_at for a in attempts],
            "outcomes": [a.outcome for a in attempts],
            "codes": [a.smtp_code for a in attempts],
            "enhanced": [a.enhanced_code for a in attempts],
            "messages": [a.message for a in attempts],
            "durations": [_duration_ms(a) for a in attempts],
            "refused": [
                json.dumps(a.refused_recipients) if a.refused_recipients is not None else None
                for a in attempts
            ],
        },
    )
    return owned


def _duration_ms(attempt: AttemptRecord) -> int:
    return max(0, round((attempt.finished_at - attempt.started_at).total_seconds() * 1000))


def _insert_attempt() -> Any:
    return pg_insert(DeliveryAttempt).on_conflict_do_nothing(
        index_elements=[DeliveryAttempt.email_id, DeliveryAttempt.attempt_number]
    )


# -- the log ------------------------------------------------------------------------


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


# -- the sweeper ------------------------------------------------------------------


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


async def find_stranded(session: AsyncSession, *, grace: timedelta, limit: int) -> list[Stranded]:
    """Emails whose dispatch may have been lost: overdue, or claimed by a vanished worker."""
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
        .where(Email.status == RECLAIMABLE_STATUS.value, Email.lease_expires_at < func.now())
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
