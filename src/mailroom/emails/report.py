"""The report the dashboard's overview shows: today's counts, sent/failed series per hour
or day, the commonest recent failure reasons, emails waiting, and the recent delivery rate;
and the providers page's attempts per provider today.

Like ``log``, it only reads, and only what the caller's ``ProjectAccess`` reaches. Every
figure but the failure reasons comes from the counters (see buckets), so the overview
costs the same at any size of the log. The series count emails by the hour (or day) they
were created in, and by the status they are in now.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from mailroom.emails import buckets, provider_counts, report_repository, workers_repository
from mailroom.emails.log import daily_summary
from mailroom.emails.log_query import LogQuery, day_bounds
from mailroom.emails.report_repository import FailureReason, SeriesPoint
from mailroom.emails.schemas.responses import DailySummary
from mailroom.emails.states import EmailStatus
from mailroom.projects.access import ProjectAccess

# Emails not final yet: what "waiting" counts on the overview.
WAITING = (EmailStatus.SCHEDULED, EmailStatus.QUEUED, EmailStatus.RETRYING, EmailStatus.SENDING)
RANGES = {"24h": ("hour", 24), "7d": ("day", 7), "30d": ("day", 30)}


@dataclass(frozen=True)
class Overview:
    summary: DailySummary
    range: str
    points: list[SeriesPoint]  # one per hour or day of the range, oldest first
    failure_reasons: list[FailureReason]
    waiting: dict[str, int]  # emails by status among WAITING
    sent_last_hour: int
    workers_alive: int  # worker processes whose heartbeat is within the takeover window


async def overview(
    session: AsyncSession,
    *,
    access: ProjectAccess,
    project: str | None,
    tz: str,
    chart_range: str,
    now: datetime,
    takeover: timedelta,
) -> Overview:
    """The overview in ``tz`` (an IANA name already checked) over ``chart_range`` (a key
    of RANGES)."""
    project_id = await access.project_id(session, project)
    query = LogQuery(tz=tz)
    unit, periods = RANGES[chart_range]
    start, end, starts = _periods(now, ZoneInfo(tz), unit, periods)
    found = await report_repository.series(
        session, start=start, end=end, unit=unit, zone=tz, project_id=project_id
    )
    by_start = {p.start: p for p in found}
    points = [by_start.get(s, SeriesPoint(s, 0, 0)) for s in starts]
    present = await report_repository.present_by_status(session, project_id=project_id)
    waiting = {status.value: present.get(status.value, 0) for status in WAITING}
    hour_start = buckets.floor(now) - timedelta(hours=1)
    recent = await report_repository.series(
        session,
        start=hour_start,
        end=buckets.ceil(now) + buckets.BUCKET,
        unit="day",
        zone="UTC",
        project_id=project_id,
    )
    return Overview(
        summary=await daily_summary(session, query, project_id=project_id, now=now),
        range=chart_range,
        points=points,
        failure_reasons=await report_repository.failure_reasons(
            session, since=now - timedelta(days=1), project_id=project_id
        ),
        waiting=waiting,
        sent_last_hour=sum(p.sent for p in recent),
        workers_alive=await workers_repository.alive(session, takeover=takeover),
    )


def _periods(
    now: datetime, zone: ZoneInfo, unit: str, count: int
) -> tuple[datetime, datetime, list[datetime]]:
    """[start, end) covering the last ``count`` hours or days of local time, and each
    period's local start (naive, as PostgreSQL's date_trunc gives it)."""
    local = now.astimezone(zone)
    if unit == "hour":
        last = local.replace(minute=0, second=0, microsecond=0, tzinfo=None)
        starts = [last - timedelta(hours=count - 1 - i) for i in range(count)]
        start = starts[0].replace(tzinfo=zone)
        end = (last + timedelta(hours=1)).replace(tzinfo=zone)
        return start, end, starts
    today: date = local.date()
    days = [today - timedelta(days=count - 1 - i) for i in range(count)]
    start, _ = day_bounds(days[0], zone)
    _, end = day_bounds(today, zone)
    return start, end, [datetime.combine(d, datetime.min.time()) for d in days]


@dataclass(frozen=True)
class ProviderDay:
    """A provider's attempts since 00:00 UTC (the day its daily quota counts)."""

    sent: int = 0  # accepted
    failed: int = 0  # refused for good (a permanent SMTP error)
    deferred: int = 0  # a temporary error, a broken connection or an unknown outcome


async def providers_today(
    session: AsyncSession, *, access: ProjectAccess, project: str | None, now: datetime
) -> dict[str, ProviderDay]:
    """Each provider's attempts today (UTC) for the caller's project (every project's for
    an admin who names none), from the counters."""
    project_id = await access.project_id(session, project)
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    found = await provider_counts.attempts_by_provider(
        session, since=midnight, project_id=project_id
    )
    counts: dict[str, dict[str, int]] = {}
    for (provider, outcome), n in found.items():
        column = {"accepted": "sent", "permanent": "failed"}.get(outcome, "deferred")
        row = counts.setdefault(provider, {})
        row[column] = row.get(column, 0) + n
    return {provider: ProviderDay(**row) for provider, row in counts.items()}
