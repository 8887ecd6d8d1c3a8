"""SQL for the email log. Functions flush, never commit: the unit of work commits.

Every status change is one guarded ``UPDATE … WHERE status IN (…)``; the sources
come from ``states`` so the SQL and the state machine cannot drift apart.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from mailroom.emails.models import DeliveryAttempt, Email
from mailroom.emails.states import (
    CLAIM,
    DISPATCHABLE_STATUSES,
    RECLAIMABLE_STATUS,
    EmailStatus,
    Transition,
)

_CLAIM_SOURCES = sorted(s.value for s in CLAIM.sources)
# A job may fire a little before its email is due (BullMQ rounds delays); anything
# earlier than this is a stale duplicate and must not cut the backoff short.
_EARLY_CLAIM_SLACK = timedelta(seconds=2)


async def add_email(session: AsyncSession, email: Email) -> Email:
    session.add(email)
    await session.flush()
    return email


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


async def claim(session: AsyncSession, email_id: uuid.UUID, lease: timedelta) -> Claimed | None:
    """Move an email to ``sending`` for one attempt; None if it is not claimable now."""
    target = (
        select(
            Email.id,
            Email.status.label("previous_status"),
            Email.updated_at.label("previous_claim_at"),
        )
        .where(
            Email.id == email_id,
            or_(
                and_(
                    Email.status.in_(_CLAIM_SOURCES),
                    or_(
                        Email.next_attempt_at.is_(None),
                        Email.next_attempt_at <= func.now() + _EARLY_CLAIM_SLACK,
                    ),
                ),
                and_(
                    Email.status == RECLAIMABLE_STATUS.value,
                    Email.lease_expires_at < func.now(),
                ),
            ),
        )
        .with_for_update()
        .cte("target")
    )
    stmt = (
        update(Email)
        .where(Email.id == target.c.id)
        .values(
            status=CLAIM.target.value,
            attempts=Email.attempts + 1,
            lease_expires_at=func.now() + lease,
            next_attempt_at=None,
            updated_at=func.now(),
        )
        .returning(Email, target.c.previous_status, target.c.previous_claim_at)
    )
    row = (await session.execute(stmt, execution_options={"populate_existing": True})).one_or_none()
    if row is None:
        return None
    email, previous_status, previous_claim_at = row
    reclaimed = previous_status == RECLAIMABLE_STATUS.value
    if reclaimed:
        # The previous attempt's worker vanished mid-send: record that it happened.
        await session.execute(
            _insert_attempt().values(
                email_id=email.id,
                attempt_number=email.attempts - 1,
                started_at=previous_claim_at,
                finished_at=func.now(),
                outcome="interrupted",
                message=(
                    "The worker stopped during this attempt; the server may or may not "
                    "have accepted the message."
                ),
                duration_ms=0,
            )
        )
    return Claimed(email=email, attempt=email.attempts, reclaimed=reclaimed)


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


async def finish_attempt(
    session: AsyncSession,
    email_id: uuid.UUID,
    transition: Transition,
    attempt: AttemptRecord,
    *,
    error: LastError | None,
    next_attempt_at: datetime | None = None,
) -> bool:
    """Record the attempt and move the email on; False if another worker owns it now."""
    values: dict[str, Any] = {
        "status": transition.target.value,
        "lease_expires_at": None,
        "next_attempt_at": next_attempt_at,
        "updated_at": func.now(),
        "last_error_code": error.code if error else None,
        "last_error_enhanced": error.enhanced_code if error else None,
        "last_error_message": error.message if error else None,
    }
    if transition.target is EmailStatus.SENT:
        values["sent_at"] = attempt.finished_at
    elif transition.target is EmailStatus.FAILED:
        values["failed_at"] = attempt.finished_at
    moved = await session.execute(
        update(Email)
        .where(
            Email.id == email_id,
            Email.status.in_([s.value for s in transition.sources]),
            Email.attempts == attempt.number,
        )
        .values(**values)
        .returning(Email.id)
    )
    owned = moved.one_or_none() is not None
    duration_ms = round((attempt.finished_at - attempt.started_at).total_seconds() * 1000)
    # When not owned, a reclaiming worker has already recorded this attempt as
    # interrupted; the conflict clause keeps its row and drops this one.
    await session.execute(
        _insert_attempt().values(
            email_id=email_id,
            attempt_number=attempt.number,
            started_at=attempt.started_at,
            finished_at=attempt.finished_at,
            outcome=attempt.outcome,
            smtp_code=attempt.smtp_code,
            enhanced_code=attempt.enhanced_code,
            message=attempt.message,
            duration_ms=max(0, duration_ms),
            refused_recipients=attempt.refused_recipients,
        )
    )
    return owned


def _insert_attempt() -> Any:
    # Attempts are append-only: one row per (email, attempt number), never rewritten.
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

    def clauses(self) -> list[Any]:
        where: list[Any] = []
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
    stmt = select(func.count()).select_from(Email).where(*log_filter.clauses())
    return int((await session.execute(stmt)).scalar_one())


@dataclass(frozen=True)
class StatusCounts:
    total: int
    sent: int
    failed: int


async def count_created_between(
    session: AsyncSession, start: datetime, end: datetime
) -> StatusCounts:
    """Counts by status of the emails created in [start, end) (an index-only scan)."""
    stmt = select(
        func.count(),
        func.count().filter(Email.status == EmailStatus.SENT.value),
        func.count().filter(Email.status == EmailStatus.FAILED.value),
    ).where(Email.created_at >= start, Email.created_at < end)
    total, sent, failed = (await session.execute(stmt)).one()
    return StatusCounts(total=total, sent=sent, failed=failed)


# -- the sweeper ------------------------------------------------------------------


@dataclass(frozen=True)
class Stranded:
    email_id: uuid.UUID
    next_attempt: int
    request_id: str | None


async def try_sweeper_lock(session: AsyncSession, key: int) -> bool:
    """One sweeper at a time across all workers; released when the transaction ends."""
    result = await session.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": key})
    return bool(result.scalar_one())


async def find_stranded(session: AsyncSession, *, grace: timedelta, limit: int) -> list[Stranded]:
    """Emails whose dispatch may have been lost: overdue, or claimed by a vanished worker."""
    overdue = (
        select(Email.id, Email.attempts, Email.request_id)
        .where(
            Email.status.in_([s.value for s in DISPATCHABLE_STATUSES]),
            Email.next_attempt_at < func.now() - grace,
        )
        .order_by(Email.next_attempt_at)
        .limit(limit)
    )
    abandoned = (
        select(Email.id, Email.attempts, Email.request_id)
        .where(Email.status == RECLAIMABLE_STATUS.value, Email.lease_expires_at < func.now())
        .order_by(Email.lease_expires_at)
        .limit(limit)
    )
    rows: list[Row[Any]] = [*(await session.execute(overdue)), *(await session.execute(abandoned))]
    return [
        Stranded(email_id=r.id, next_attempt=r.attempts + 1, request_id=r.request_id) for r in rows
    ]
