"""SQL of the report the dashboard's overview shows: series from the counters, recent
failure reasons from a bounded number of rows.

Nothing here scans the log: the series read the 15-minute counters (a few hundred small
rows for 30 days), and the failure reasons read at most ``RECENT_FAILURES`` rows, newest
first, through the (project, status, created_at) index.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from mailroom.emails.log_repository import counter_cells
from mailroom.emails.models import Email, EmailCountDelta, EmailStatusTotal
from mailroom.emails.states import EmailStatus

RECENT_FAILURES = 1000  # the failure reasons are those of the latest this many failures


@dataclass(frozen=True)
class SeriesPoint:
    start: datetime  # the hour or day, in the zone asked for (naive local time)
    sent: int
    failed: int


@dataclass(frozen=True)
class FailureReason:
    code: int | None
    enhanced_code: str | None
    count: int


async def series(
    session: AsyncSession,
    *,
    start: datetime,
    end: datetime,
    unit: str,
    zone: str,
    project_id: uuid.UUID | None,
) -> list[SeriesPoint]:
    """Sent and failed emails created in [start, end), per ``unit`` ('hour' or 'day') of
    local time in ``zone``, from the counters; periods without any are left out."""
    if unit not in ("hour", "day"):
        raise ValueError("unit is 'hour' or 'day'")
    cells = counter_cells(project_id)
    period = func.date_trunc(unit, func.timezone(zone, cells.c.bucket)).label("period")
    sent = func.coalesce(func.sum(cells.c.n).filter(cells.c.status == EmailStatus.SENT.value), 0)
    failed = func.coalesce(
        func.sum(cells.c.n).filter(cells.c.status == EmailStatus.FAILED.value), 0
    )
    stmt = (
        select(period, sent, failed)
        .where(
            cells.c.bucket >= start,
            cells.c.bucket < end,
            cells.c.status.in_([EmailStatus.SENT.value, EmailStatus.FAILED.value]),
        )
        .group_by(period)
        .order_by(period)
    )
    return [SeriesPoint(p, int(s), int(f)) for p, s, f in await session.execute(stmt)]


async def failure_reasons(
    session: AsyncSession, *, since: datetime, project_id: uuid.UUID | None, top: int = 5
) -> list[FailureReason]:
    """The commonest (code, enhanced code) among the latest failed emails created since
    ``since``, most frequent first."""
    recent = select(Email.last_error_code, Email.last_error_enhanced).where(
        Email.status == EmailStatus.FAILED.value, Email.created_at >= since
    )
    if project_id is not None:
        recent = recent.where(Email.project_id == project_id)
    latest = (
        recent.order_by(Email.created_at.desc(), Email.id.desc()).limit(RECENT_FAILURES).subquery()
    )
    count = func.count().label("n")
    stmt = (
        select(latest.c.last_error_code, latest.c.last_error_enhanced, count)
        .group_by(latest.c.last_error_code, latest.c.last_error_enhanced)
        .order_by(count.desc(), latest.c.last_error_code)
        .limit(top)
    )
    return [FailureReason(c, e, int(n)) for c, e, n in await session.execute(stmt)]


async def present_by_status(
    session: AsyncSession, *, project_id: uuid.UUID | None
) -> dict[str, int]:
    """Emails present in each status (from the counters, in one statement)."""
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
    stmt = select(present.c.status, func.sum(present.c.n)).group_by(present.c.status)
    return {status: int(n) for status, n in await session.execute(stmt)}


def _of_project(stmt: Any, column: Any, project_id: uuid.UUID | None) -> Any:
    return stmt if project_id is None else stmt.where(column == project_id)
