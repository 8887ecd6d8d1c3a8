"""SQL of the transitions a caller asks for: new emails stored, cancel, retry, requeue.

Functions flush, never commit: the unit of work commits. Each transition is one
guarded ``UPDATE … WHERE status IN (…)`` whose sources come from ``states``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mailroom.emails.log_repository import Listed, LogFilter
from mailroom.emails.models import Email, EmailAttachment
from mailroom.emails.states import CANCEL, RETRY, Transition
from mailroom.projects.models import Project

_EMAILS = cast(Table, Email.__table__)
_PROJECT_NAME = select(Project.name).where(Project.id == _EMAILS.c.project_id).scalar_subquery()


async def add_emails(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Insert new emails (column values, every one given) in one statement."""
    if rows:
        # A Core insert: no ORM identity bookkeeping on the request path.
        await session.execute(insert(Email), list(rows))


async def add_attachments(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await session.execute(insert(EmailAttachment), list(rows))


async def _move(
    session: AsyncSession,
    email_id: uuid.UUID,
    transition: Transition,
    project_id: uuid.UUID | None,
    **values: Any,
) -> Listed | None:
    """One guarded transition of one email of ``project_id`` (any project's if None); None
    if there is no such email or its status does not allow it."""
    stmt = (
        update(_EMAILS)
        .where(
            _EMAILS.c.id == email_id,
            _EMAILS.c.status.in_([s.value for s in transition.sources]),
        )
        .values(status=transition.target.value, updated_at=func.now(), **values)
        .returning(*_EMAILS.c, _PROJECT_NAME.label("project_name"))
    )
    if project_id is not None:
        stmt = stmt.where(_EMAILS.c.project_id == project_id)
    row = (await session.execute(stmt)).mappings().one_or_none()
    return Listed(Email.from_row(row), row["project_name"]) if row is not None else None


async def cancel(
    session: AsyncSession, email_id: uuid.UUID, *, project_id: uuid.UUID | None
) -> Listed | None:
    """Cancel an email no worker holds; a job still in Redis for it finds nothing to claim."""
    return await _move(
        session, email_id, CANCEL, project_id, cancelled_at=func.now(), next_attempt_at=None
    )


async def retry(
    session: AsyncSession, email_id: uuid.UUID, *, project_id: uuid.UUID | None
) -> Listed | None:
    """Put a failed email back in the queue, with a fresh budget of attempts."""
    return await _move(
        session,
        email_id,
        RETRY,
        project_id,
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
    """Retry up to ``limit`` failed emails matching the filter (its project's), oldest first."""
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
