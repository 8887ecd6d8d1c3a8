"""Retention: deleting old emails in a final state, by hand (`mailroom purge`) or on a schedule.

Only ``sent``, ``failed`` and ``cancelled`` emails are ever deleted, whatever is asked.
They go in small batches, one transaction each (at most ``PURGE_BATCH_SIZE`` rows,
oldest first, status by status), skipping rows another transaction holds and checking
the status again in the DELETE itself (a failed email being retried stays), so a purge
never holds long locks and runs beside the API and the workers. Their delivery attempts,
attachments and idempotency records go with them (ON DELETE CASCADE). The daily
report is unaffected: the counters keep ``created`` for purged rows (migration 0003),
while ``pagination.total`` counts only the rows still there.

With ``RETENTION_DAYS`` set, every worker runs :func:`purge_expired_forever`; an
advisory lock taken by each batch lets one worker purge at a time, and each run
stops after ``RETENTION_MAX_BATCHES`` batches so that a large first purge is spread
over several runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.emails import purge_repository
from mailroom.emails.states import EmailStatus
from mailroom.periodic import RunAgainIn, every
from mailroom.settings import Settings

log = structlog.get_logger(__name__)

# In the order the log's report reads them: sent, failed, cancelled.
PURGEABLE_STATUSES: tuple[EmailStatus, ...] = tuple(s for s in EmailStatus if s.is_final)

RETENTION_LOCK = 0x6D61696C7267  # any constant shared by every worker (not the sweeper's)
RETENTION_FIRST_DELAY = 60.0  # seconds after the worker starts
RETENTION_INTERVAL = 3600.0  # seconds between runs
RETENTION_BACKLOG_INTERVAL = 60.0  # seconds to the next run when a run left work behind
RETENTION_MAX_BATCHES = 100  # batches per run (100,000 emails at the default batch size)

MAX_DURATION = timedelta(days=36_500)
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_DURATION = re.compile(r"(\d+)([mhdw])")
_WHY_NOT_FINAL = {
    EmailStatus.QUEUED: "is waiting to be delivered",
    EmailStatus.SCHEDULED: "is waiting for its send time",
    EmailStatus.RETRYING: "is waiting for its next attempt",
    EmailStatus.SENDING: "is being delivered right now",
}


def parse_duration(value: str) -> timedelta:
    """``90d``, ``12h``, ``30m``, ``2w``: a positive age; ValueError says what is wrong."""
    text = value.strip().lower()
    match = _DURATION.fullmatch(text)
    if match is None:
        if text.startswith("-"):
            raise ValueError(f"{value!r} is negative: give a positive age such as 90d")
        raise ValueError(
            f"{value!r} is not a duration: use a whole number and a unit, "
            "m (minutes), h (hours), d (days) or w (weeks), e.g. 90d"
        )
    amount = int(match.group(1))
    if amount == 0:
        raise ValueError(
            f"{value!r} is zero: that would select every final email; give a positive age "
            "such as 90d"
        )
    unit = _UNITS[match.group(2)]
    if amount > MAX_DURATION / timedelta(**{unit: 1}):
        raise ValueError(f"{value!r} is too long: at most {MAX_DURATION.days}d")
    return timedelta(**{unit: amount})


def parse_statuses(value: str) -> tuple[EmailStatus, ...]:
    """Comma-separated final statuses; ValueError explains why a status cannot be purged."""
    names = {part.strip().lower() for part in value.split(",") if part.strip()}
    allowed = ", ".join(s.value for s in PURGEABLE_STATUSES)
    if not names:
        raise ValueError(f"give at least one status: {allowed}")
    for name in sorted(names):
        try:
            status = EmailStatus(name)
        except ValueError:
            raise ValueError(f"unknown status {name!r}: choose from {allowed}") from None
        if not status.is_final:
            raise ValueError(
                f"{name!r} is not a final status (a {name} email {_WHY_NOT_FINAL[status]}): "
                f"only {allowed} emails are ever purged"
            )
    return tuple(s for s in PURGEABLE_STATUSES if s.value in names)


def _check_final(statuses: Sequence[EmailStatus]) -> None:
    not_final = [s.value for s in statuses if not s.is_final]
    if not_final:
        raise ValueError(f"only final emails are purged, not {', '.join(not_final)}")


@dataclass(frozen=True)
class PurgeResult:
    before: datetime
    deleted: dict[EmailStatus, int] = field(default_factory=dict)
    batches: int = 0  # transactions that deleted (or looked for) emails
    # Every matching email was reached. False when the run stopped at its batch limit,
    # or when another worker held the purge lock (``locked_out``).
    complete: bool = True
    locked_out: bool = False

    @property
    def total(self) -> int:
        return sum(self.deleted.values())


async def count_purgeable(
    sessions: async_sessionmaker[AsyncSession],
    *,
    before: datetime,
    statuses: Sequence[EmailStatus] = PURGEABLE_STATUSES,
) -> dict[EmailStatus, int]:
    """How many emails a purge of these statuses created before ``before`` would delete."""
    _check_final(statuses)
    async with sessions() as session:
        return {
            status: await purge_repository.count_older(session, status=status, before=before)
            for status in statuses
        }


async def purge(
    sessions: async_sessionmaker[AsyncSession],
    *,
    before: datetime,
    batch_size: int,
    statuses: Sequence[EmailStatus] = PURGEABLE_STATUSES,
    max_batches: int | None = None,
    lock_key: int | None = None,
    on_batch: Callable[[PurgeResult], None] | None = None,
) -> PurgeResult:
    """Delete the emails in these final statuses created before ``before``, batch by batch.

    Each batch is its own transaction; what was deleted stays deleted if a later batch
    fails. With ``lock_key``, each batch first takes that advisory lock and the purge
    stops (``locked_out``) if another transaction holds it. ``on_batch`` sees the
    running totals after each batch.
    """
    _check_final(statuses)
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    deleted = dict.fromkeys(statuses, 0)
    pending = list(statuses)  # statuses that may still have emails to purge
    batches = 0

    def result(*, complete: bool, locked_out: bool = False) -> PurgeResult:
        return PurgeResult(before, dict(deleted), batches, complete, locked_out)

    while pending:
        if max_batches is not None and batches >= max_batches:
            return result(complete=False)
        # One transaction deletes at most batch_size emails: the oldest of the first
        # pending status, then, if that one runs out, of the next.
        this_batch: dict[EmailStatus, int] = {}
        exhausted: set[EmailStatus] = set()
        async with sessions() as session:
            if lock_key is not None and not await purge_repository.try_purge_lock(
                session, lock_key
            ):
                return result(complete=False, locked_out=True)
            budget = batch_size
            for status in pending:
                count = await purge_repository.delete_batch(
                    session, status=status, before=before, limit=budget
                )
                this_batch[status] = count
                if count < budget:  # fewer than asked: none left (locked rows wait)
                    exhausted.add(status)
                budget -= count
                if budget == 0:
                    break
            await session.commit()
        batches += 1
        for status, count in this_batch.items():
            deleted[status] += count
        pending = [s for s in pending if s not in exhausted]
        if on_batch is not None:
            on_batch(result(complete=False))
    return result(complete=True)


async def purge_expired(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    now: datetime | None = None,
    max_batches: int = RETENTION_MAX_BATCHES,
) -> PurgeResult | None:
    """One scheduled run: final emails older than RETENTION_DAYS, at most ``max_batches``.

    None when retention is off, or when another worker is purging right now.
    """
    if not settings.retention_days:
        return None
    now = now or datetime.now(UTC)
    result = await purge(
        sessions,
        before=now - timedelta(days=settings.retention_days),
        batch_size=settings.purge_batch_size,
        max_batches=max_batches,
        lock_key=RETENTION_LOCK,
    )
    if result.locked_out and result.batches == 0:
        return None
    if result.total:
        log.info(
            "retention.purged",
            **{status.value: count for status, count in result.deleted.items()},
            total=result.total,
            batches=result.batches,
            complete=result.complete,
            before=result.before.isoformat(),
            retention_days=settings.retention_days,
        )
    return result


async def purge_expired_forever(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    first_delay: float = RETENTION_FIRST_DELAY,
    interval: float = RETENTION_INTERVAL,
    backlog_interval: float = RETENTION_BACKLOG_INTERVAL,
) -> None:
    """The worker's retention loop: a run shortly after start, then every ``interval``."""

    async def run() -> RunAgainIn | None:
        result = await purge_expired(sessions, settings)
        if result is not None and not result.complete and not result.locked_out:
            return RunAgainIn(backlog_interval)  # more is due: carry on soon, in bounded runs
        return None

    await every(interval, run, event="retention.failed", first_delay=first_delay)
