"""The email counters of migrations 0003 and 0006 against real PostgreSQL.

The triggers on ``emails`` append deltas to ``email_count_deltas``;
``mailroom_fold_counts()`` (``counters.fold_once``) moves them into ``email_counts``
(per project, 15-minute bucket and status) and ``email_status_totals`` (per project and
status). ``log_repository.count_emails``
(pagination total) and ``log_repository.count_created_between`` (daily report) read the
folded tables and the deltas not folded yet together. Every check here compares them
with what a plain ``count(*)`` over ``emails`` says, and with a ledger kept in Python of
what the test did (which alone knows the purged rows), before and after folds. The
emails belong to two projects, and every count is checked for each project and for both
(an admin's view).
"""

from __future__ import annotations

import asyncio
import random
import secrets
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any, TypeAlias
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from mailroom.db.engine import create_engine, create_session_factory
from mailroom.db.migrate import migrate
from mailroom.emails import buckets, log_repository
from mailroom.emails.counters import fold_once
from mailroom.emails.log_query import day_bounds
from mailroom.emails.log_repository import LogFilter, StatusCounts
from mailroom.emails.states import EmailStatus
from mailroom.projects.models import DEFAULT_PROJECT_ID
from mailroom.settings import Settings

pytestmark = pytest.mark.usefixtures("clean", "other_project")

Db: TypeAlias = AsyncSession | AsyncConnection

STATUSES = tuple(s.value for s in EmailStatus)
LEGACY_STATUSES = ("queued", "sending", "retrying", "sent", "failed")  # before 0005
RECIPIENTS = ("ann@example.com", "bob@example.com", "cy@example.com")
# The second project the emails are spread over (the first is the default project).
OTHER = uuid.UUID("00000000-0000-4000-8000-0000000c0417")
PROJECTS = (DEFAULT_PROJECT_ID, OTHER)
# Whose counts a read asks for: one project's, or (None) every project's.
VIEWS: tuple[uuid.UUID | None, ...] = (None, *PROJECTS)
BUCKET = timedelta(minutes=15)
SPAN = timedelta(days=3)
# The instant every sent_at / failed_at / cancelled_at is set to (the CHECK constraints
# want one iff).
STAMP = datetime(2026, 12, 1, tzinfo=UTC)
DEADLOCK = "40P01"
_MICROSECOND = timedelta(microseconds=1)
ZONES = (
    "UTC",
    "Europe/Berlin",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "America/St_Johns",
    "Pacific/Chatham",
)


@pytest.fixture
async def other_project(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        await session.execute(
            text(
                "INSERT INTO projects (id, name) VALUES (:id, 'counters-other') "
                "ON CONFLICT DO NOTHING"
            ),
            {"id": OTHER},
        )
        await session.commit()


# -- the ledger: what the test did, in Python -----------------------------------------


@dataclass(frozen=True)
class Row:
    created_at: datetime
    status: str
    recipient: str
    project: uuid.UUID = DEFAULT_PROJECT_ID


Cell: TypeAlias = tuple[uuid.UUID, datetime, str]


@dataclass
class Ledger:
    present: dict[uuid.UUID, Row] = field(default_factory=dict)
    # Deleted rows, with the status they had when deleted: the report keeps them.
    purged: list[Row] = field(default_factory=list)

    def copy(self) -> Ledger:
        return Ledger(dict(self.present), list(self.purged))

    def merge(self, other: Ledger) -> None:
        self.present.update(other.present)
        self.purged += other.purged

    def delete(self, ids: Iterable[uuid.UUID]) -> None:
        for email_id in ids:
            self.purged.append(self.present.pop(email_id))

    def expected_counters(
        self,
    ) -> tuple[dict[Cell, tuple[int, int]], Counter[tuple[uuid.UUID, str]]]:
        """What email_counts (created, purged per project, bucket and status) and the
        totals (per project and status) hold."""
        created: Counter[Cell] = Counter()
        purged: Counter[Cell] = Counter()
        for row in self.present.values():
            created[row.project, buckets.floor(row.created_at), row.status] += 1
        for row in self.purged:
            created[row.project, buckets.floor(row.created_at), row.status] += 1
            purged[row.project, buckets.floor(row.created_at), row.status] += 1
        cells = {key: (created[key], purged[key]) for key in created}
        return cells, Counter((row.project, row.status) for row in self.present.values())

    def matching(self, log_filter: LogFilter) -> int:
        statuses = {s.value for s in log_filter.statuses}
        return sum(
            1
            for row in self.present.values()
            if (log_filter.project_id is None or row.project == log_filter.project_id)
            and (not statuses or row.status in statuses)
            and (log_filter.recipient is None or row.recipient == log_filter.recipient)
            and (log_filter.since is None or row.created_at >= log_filter.since)
            and (log_filter.until is None or row.created_at < log_filter.until)
        )

    def report(
        self, start: datetime, end: datetime, project_id: uuid.UUID | None = None
    ) -> StatusCounts:
        rows = [
            r
            for r in [*self.present.values(), *self.purged]
            if start <= r.created_at < end and project_id in (None, r.project)
        ]
        return StatusCounts(
            total=len(rows),
            sent=sum(r.status == EmailStatus.SENT.value for r in rows),
            failed=sum(r.status == EmailStatus.FAILED.value for r in rows),
            cancelled=sum(r.status == EmailStatus.CANCELLED.value for r in rows),
            bounced=sum(r.status == EmailStatus.BOUNCED.value for r in rows),
            suppressed=sum(r.status == EmailStatus.SUPPRESSED.value for r in rows),
        )


# -- writing emails with plain SQL ------------------------------------------------------


def new_id(rng: random.Random) -> uuid.UUID:
    """A UUID the seed decides, so which rows get picked is the same on every run."""
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def _stamps(status: str) -> dict[str, datetime | None]:
    return {
        "sent_at": STAMP if status in (EmailStatus.SENT.value, EmailStatus.BOUNCED.value) else None,
        "failed_at": STAMP if status == EmailStatus.FAILED.value else None,
        "cancelled_at": STAMP if status == EmailStatus.CANCELLED.value else None,
    }


def _values(rows: dict[uuid.UUID, Row], *, legacy: bool = False) -> tuple[str, dict[str, Any]]:
    """One multi-row VALUES list (a single INSERT statement, so one trigger call).

    ``legacy``: for the schema before migration 0005 (no cancelled_at, no project_id).
    """
    tuples: list[str] = []
    params: dict[str, Any] = {}
    for i, (email_id, row) in enumerate(rows.items()):
        tuples.append(
            f"(:id{i}, 'sender@example.com', :to{i}, :to{i}, 's', :mid{i}, :st{i}, "
            f":ca{i}, :ca{i}, :sa{i}, :fa{i}{'' if legacy else f', :xa{i}, :pr{i}'})"
        )
        stamps = _stamps(row.status)
        params |= {
            f"id{i}": email_id,
            f"to{i}": [row.recipient],
            f"mid{i}": f"<{email_id}@example.com>",
            f"st{i}": row.status,
            f"ca{i}": row.created_at,
            f"sa{i}": stamps["sent_at"],
            f"fa{i}": stamps["failed_at"],
        }
        if not legacy:
            params[f"xa{i}"] = stamps["cancelled_at"]
            params[f"pr{i}"] = row.project
    columns = (
        "id, sender, to_addrs, recipients, subject, message_id, status, "
        "created_at, updated_at, sent_at, failed_at"
        + ("" if legacy else ", cancelled_at, project_id")
    )
    return f"INSERT INTO emails ({columns}) VALUES {', '.join(tuples)}", params


async def insert_rows(db: Db, rows: dict[uuid.UUID, Row], *, legacy: bool = False) -> None:
    sql, params = _values(rows, legacy=legacy)
    await db.execute(text(sql), params)


async def set_status(db: Db, ids: list[uuid.UUID], status: str) -> None:
    await db.execute(
        text(
            "UPDATE emails SET status = :status, sent_at = :sent_at, failed_at = :failed_at, "
            "cancelled_at = :cancelled_at, attempts = attempts + 1, updated_at = :stamp "
            "WHERE id = ANY(:ids)"
        ),
        {"ids": ids, "status": status, "stamp": STAMP, **_stamps(status)},
    )


async def set_statuses(db: Db, targets: dict[uuid.UUID, str]) -> None:
    """One UPDATE moving each row to its own status."""
    await db.execute(
        text(
            "UPDATE emails AS e SET status = v.status, "
            "sent_at = CASE WHEN v.status IN ('sent', 'bounced') "
            "THEN CAST(:stamp AS timestamptz) END, "
            "failed_at = CASE WHEN v.status = 'failed' THEN CAST(:stamp AS timestamptz) END, "
            "cancelled_at = CASE WHEN v.status = 'cancelled' "
            "THEN CAST(:stamp AS timestamptz) END "
            "FROM unnest(CAST(:ids AS uuid[]), CAST(:statuses AS varchar[])) AS v(id, status) "
            "WHERE e.id = v.id"
        ),
        {"ids": list(targets), "statuses": list(targets.values()), "stamp": STAMP},
    )


# -- random instants and filters --------------------------------------------------------


def random_instant(rng: random.Random, start: datetime, span: timedelta) -> datetime:
    """Anywhere in [start, start + span]: often on a bucket boundary or a microsecond off."""
    boundary = buckets.ceil(start) + rng.randrange(int(span / BUCKET) + 1) * BUCKET
    kind = rng.random()
    if kind < 0.25:
        return boundary
    if kind < 0.35:
        return boundary - _MICROSECOND
    if kind < 0.45:
        return boundary + _MICROSECOND
    if kind < 0.65:
        return start + timedelta(seconds=rng.randrange(int(span.total_seconds())))
    return start + rng.randrange(span // _MICROSECOND) * _MICROSECOND


# Fixed offsets, like the UTC instants LogQuery hands over. (A ZoneInfo instant in a DST
# fold would trip buckets.floor, whose arithmetic is wall-clock: not reachable today.)
_FILTER_ZONES: tuple[tzinfo, ...] = (
    UTC,
    timezone(timedelta(hours=5, minutes=45)),
    timezone(timedelta(hours=-3, minutes=-30)),
    timezone(timedelta(hours=13, minutes=45)),
)


def random_filter(rng: random.Random, window: datetime) -> LogFilter:
    start, span = window - timedelta(hours=1), SPAN + timedelta(hours=2)
    statuses: tuple[EmailStatus, ...] = ()
    if rng.random() < 0.7:
        statuses = tuple(rng.sample(list(EmailStatus), rng.randint(1, len(EmailStatus))))
    since = random_instant(rng, start, span) if rng.random() < 0.75 else None
    until = random_instant(rng, start, span) if rng.random() < 0.75 else None
    shape = rng.random()
    if since is not None and shape < 0.15:
        # Shorter than a bucket, possibly straddling a boundary, possibly reversed.
        until = since + rng.randint(-BUCKET // _MICROSECOND, BUCKET // _MICROSECOND) * _MICROSECOND
    elif since is not None and shape < 0.25:
        until = since + rng.choice([BUCKET, 2 * BUCKET, timedelta(0), -BUCKET])
    elif since is not None and until is not None and since > until and shape < 0.8:
        since, until = until, since
    zone = rng.choice(_FILTER_ZONES)
    return LogFilter(
        project_id=rng.choice(VIEWS),
        statuses=statuses,
        recipient=rng.choice(RECIPIENTS) if rng.random() < 0.1 else None,
        since=since.astimezone(zone) if since is not None else None,
        until=until.astimezone(zone) if until is not None else None,
    )


# -- reading what the database says -----------------------------------------------------


async def exact_count(session: AsyncSession, log_filter: LogFilter) -> int:
    """count(*) over the rows, written independently of LogFilter.clauses."""
    result = await session.execute(
        text(
            "SELECT count(*) FROM emails "
            "WHERE (CAST(:project AS uuid) IS NULL OR project_id = :project) "
            "AND (cardinality(CAST(:statuses AS text[])) = 0 "
            "       OR status = ANY(CAST(:statuses AS text[]))) "
            "AND (CAST(:recipient AS text) IS NULL OR CAST(:recipient AS text) = ANY(recipients)) "
            "AND (CAST(:since AS timestamptz) IS NULL OR created_at >= :since) "
            "AND (CAST(:until AS timestamptz) IS NULL OR created_at < :until)"
        ),
        {
            "project": log_filter.project_id,
            "statuses": [s.value for s in log_filter.statuses],
            "recipient": log_filter.recipient,
            "since": log_filter.since,
            "until": log_filter.until,
        },
    )
    return int(result.scalar_one())


# The folded tables, and the same plus the deltas not folded yet (what readers add up).
_FOLDED_CELLS = "SELECT project_id, bucket, status, created, purged FROM email_counts"
_ALL_CELLS = f"""
    {_FOLDED_CELLS}
    UNION ALL SELECT project_id, bucket, status, created, purged FROM email_count_deltas
"""
_FOLDED_TOTALS = "SELECT project_id, status, present FROM email_status_totals"
_ALL_TOTALS = (
    f"{_FOLDED_TOTALS} UNION ALL SELECT project_id, status, present FROM email_count_deltas"
)


async def counter_cells(db: Db, *, folded_only: bool = False) -> dict[Cell, tuple[int, int]]:
    """(created, purged) per (project, bucket, status); cells that net to nothing are left
    out."""
    result = await db.execute(
        text(
            "SELECT project_id, bucket, status, sum(created), sum(purged) "
            f"FROM ({_FOLDED_CELLS if folded_only else _ALL_CELLS}) AS c "
            "GROUP BY project_id, bucket, status HAVING sum(created) <> 0 OR sum(purged) <> 0"
        )
    )
    return {(r[0], r[1].astimezone(UTC), r[2]): (int(r[3]), int(r[4])) for r in result}


async def status_totals(db: Db, *, folded_only: bool = False) -> Counter[tuple[uuid.UUID, str]]:
    result = await db.execute(
        text(
            "SELECT project_id, status, sum(present) "
            f"FROM ({_FOLDED_TOTALS if folded_only else _ALL_TOTALS}) AS t "
            "GROUP BY project_id, status HAVING sum(present) <> 0"
        )
    )
    return Counter({(r[0], r[1]): int(r[2]) for r in result})


_FOLD = text("SELECT mailroom_fold_counts()")


async def delta_rows(db: Db) -> int:
    """How many delta rows wait to be folded (as this transaction sees it)."""
    return int(await db.scalar(text("SELECT count(*) FROM email_count_deltas")) or 0)


async def rows_by_cell(db: Db) -> dict[Cell, int]:
    """What the rows present say per (project, bucket, status), bucketed by PostgreSQL
    itself."""
    result = await db.execute(
        text(
            "SELECT project_id, "
            "date_bin('15 minutes', created_at, TIMESTAMPTZ '2000-01-01 00:00:00+00'), "
            "status, count(*) FROM emails GROUP BY 1, 2, 3"
        )
    )
    return {(r[0], r[1].astimezone(UTC), r[2]): int(r[3]) for r in result}


def _present(cells: dict[Cell, tuple[int, int]]) -> dict[Cell, int]:
    return {key: c - p for key, (c, p) in cells.items() if c != p}


def _diff(actual: dict[Any, Any], expected: dict[Any, Any]) -> dict[Any, Any]:
    return {
        k: {"counters": actual.get(k), "expected": expected.get(k)}
        for k in sorted(set(actual) | set(expected), key=str)
        if actual.get(k) != expected.get(k)
    }


async def assert_counters_match(db: Db, ledger: Ledger, *, folded_only: bool = False) -> None:
    """Folded + unfolded counters (or, with folded_only, the folded tables alone) exact."""
    which = "folded counters" if folded_only else "folded + unfolded counters"
    cells, totals = ledger.expected_counters()
    actual_cells = await counter_cells(db, folded_only=folded_only)
    assert actual_cells == cells, (
        f"{which}: (created, purged) per cell off: {_diff(actual_cells, cells)}"
    )
    present = await rows_by_cell(db)
    assert _present(actual_cells) == present, f"{which}: created - purged is not the rows"
    actual_totals = await status_totals(db, folded_only=folded_only)
    assert actual_totals == totals, f"{which}: status totals off: {_diff(actual_totals, totals)}"


async def assert_all_folded(db: Db, ledger: Ledger) -> None:
    assert await delta_rows(db) == 0, "deltas left after a fold with no writer about"
    await assert_counters_match(db, ledger, folded_only=True)


async def fold_and_check(sessions: async_sessionmaker[AsyncSession], ledger: Ledger) -> int:
    """fold_once with no writer about: it folds every delta, and the folded tables are exact."""
    async with sessions() as session:
        pending = await delta_rows(session)
    folded = await fold_once(sessions)
    assert folded == pending, f"mailroom_fold_counts() folded {folded} of {pending} delta rows"
    async with sessions() as session:
        await assert_all_folded(session, ledger)
    return folded


Range: TypeAlias = tuple[datetime, datetime]


def zone_days(window: datetime, days: int) -> list[Range]:
    """Every zone's local days around the window (23, 24 or 25 hours: whole buckets)."""
    first_day = (window - timedelta(days=1)).date()
    return [
        day_bounds(first_day + timedelta(days=offset), ZoneInfo(zone_name))
        for zone_name in ZONES
        for offset in range(days)
    ]


def random_range(rng: random.Random, window: datetime) -> Range:
    """A zone's day, or whole buckets that are no zone's day (empty and reversed too)."""
    if rng.random() < 0.5:
        day = (window - timedelta(days=1)).date() + timedelta(days=rng.randrange(6))
        return day_bounds(day, ZoneInfo(rng.choice(ZONES)))
    start = buckets.floor(random_instant(rng, window, SPAN))
    return start, start + rng.randint(-4, 200) * BUCKET


async def answers(
    session: AsyncSession, ledger: Ledger, filters: list[LogFilter], ranges: list[Range]
) -> list[int | StatusCounts]:
    """What count_emails and count_created_between say, each checked against the ledger."""
    said: list[int | StatusCounts] = []
    for log_filter in filters:
        counted = await log_repository.count_emails(session, log_filter)
        expected = ledger.matching(log_filter)
        assert counted == expected, f"count_emails({log_filter}) = {counted}, not {expected}"
        said.append(counted)
    for start, end in ranges:
        for project_id in VIEWS:
            report = await log_repository.count_created_between(
                session, start, end, project_id=project_id
            )
            expected_report = ledger.report(start, end, project_id)
            assert report == expected_report, (
                f"count_created_between({start}, {end}, {project_id}) = {report}, expected "
                f"{expected_report} (purged rows included)"
            )
            said.append(report)
    return said


# -- 1. a seeded random history against the real database -------------------------------


@dataclass
class History:
    rng: random.Random
    window: datetime
    ledger: Ledger = field(default_factory=Ledger)
    # Picks the reads made around each fold (apart, so they do not change the history).
    reads_rng: random.Random = field(default_factory=lambda: random.Random(0))
    folds: int = 0  # checked folds between transactions

    def instant(self) -> datetime:
        return random_instant(self.rng, self.window, SPAN)

    def new_rows(self, n: int) -> dict[uuid.UUID, Row]:
        """Half of them bunched in one bucket, mostly in one status: cells with several rows."""
        rng = self.rng
        hot, hot_status = buckets.floor(self.instant()), rng.choice(STATUSES)
        rows: dict[uuid.UUID, Row] = {}
        for _ in range(n):
            if rng.random() < 0.5:
                created_at = hot + timedelta(microseconds=rng.randrange(BUCKET // _MICROSECOND))
            else:
                created_at = self.instant()
            status = hot_status if rng.random() < 0.6 else rng.choice(STATUSES)
            rows[new_id(rng)] = Row(
                created_at, status, rng.choice(RECIPIENTS), rng.choice(PROJECTS)
            )
        return rows

    def some(self, ledger: Ledger, most: int) -> list[uuid.UUID]:
        ids = sorted(ledger.present)
        return self.rng.sample(ids, min(len(ids), self.rng.randint(1, most))) if ids else []

    async def operation(self, session: AsyncSession, ledger: Ledger) -> None:
        """One statement on ``emails``, recorded in ``ledger`` (the transaction's copy)."""
        rng, present = self.rng, ledger.present
        kind = rng.choices(
            [
                "insert_one",
                "insert_many",
                "status_one",
                "status_bulk",
                "status_each",
                "swap",
                "no_status_change",
                "same_status",
                "move_bucket",
                "move_project",
                "upsert",
                "delete_one",
                "delete_bulk",
                "delete_range",
                "fold",
            ],
            weights=[14, 12, 14, 10, 6, 5, 8, 4, 2, 2, 3, 6, 4, 2, 3],
        )[0]
        if kind == "fold":
            # A fold inside a writer's transaction: it folds that transaction's own deltas
            # too, and is undone with it (savepoint or transaction rolled back).
            await session.execute(_FOLD)
        elif kind in ("insert_one", "insert_many") or not present:
            rows = self.new_rows(1 if kind == "insert_one" else rng.randint(2, 12))
            await insert_rows(session, rows)
            present.update(rows)
        elif kind == "status_one":
            (email_id,) = self.some(ledger, 1)
            status = rng.choice(STATUSES)  # sometimes its own: no change to count
            await session.execute(
                text(
                    "UPDATE emails SET status = :status, sent_at = :sent_at, "
                    "failed_at = :failed_at, cancelled_at = :cancelled_at WHERE id = :id"
                ),
                {"id": email_id, "status": status, **_stamps(status)},
            )
            present[email_id] = replace(present[email_id], status=status)
        elif kind == "status_bulk":
            ids, status = self.some(ledger, 15), rng.choice(STATUSES)
            await set_status(session, ids, status)
            for email_id in ids:
                present[email_id] = replace(present[email_id], status=status)
        elif kind == "status_each":
            targets = {email_id: rng.choice(STATUSES) for email_id in self.some(ledger, 15)}
            await set_statuses(session, targets)
            for email_id, status in targets.items():
                present[email_id] = replace(present[email_id], status=status)
        elif kind == "swap":
            # Two rows of one bucket trade statuses: that cell's counts net to nothing.
            ids = self.some(ledger, 30)
            by_bucket: dict[datetime, list[uuid.UUID]] = {}
            for email_id in ids:
                by_bucket.setdefault(buckets.floor(present[email_id].created_at), []).append(
                    email_id
                )
            pairs = [
                (a, b)
                for group in by_bucket.values()
                for a in group
                for b in group
                if present[a].status < present[b].status
            ]
            a, b = pairs[0] if pairs else (ids[0], ids[-1])
            targets = {a: present[b].status, b: present[a].status}
            await set_statuses(session, targets)
            for email_id, status in targets.items():
                present[email_id] = replace(present[email_id], status=status)
        elif kind == "no_status_change":
            if rng.random() < 0.5:
                await session.execute(
                    text(
                        "UPDATE emails SET attempts = attempts + 1, subject = 'again', "
                        "updated_at = :stamp WHERE id = ANY(:ids)"
                    ),
                    {"ids": self.some(ledger, 20), "stamp": STAMP},
                )
            else:
                low = self.instant()
                await session.execute(
                    text(
                        "UPDATE emails SET last_error_message = 'x' "
                        "WHERE created_at >= :low AND created_at < :high"
                    ),
                    {"low": low, "high": low + timedelta(hours=rng.randint(1, 12))},
                )
        elif kind == "same_status":
            await session.execute(
                text("UPDATE emails SET status = status WHERE id = ANY(:ids)"),
                {"ids": self.some(ledger, 20)},
            )
        elif kind == "move_bucket":
            (email_id,) = self.some(ledger, 1)
            created_at = self.instant()
            await session.execute(
                text("UPDATE emails SET created_at = :created_at WHERE id = :id"),
                {"id": email_id, "created_at": created_at},
            )
            present[email_id] = replace(present[email_id], created_at=created_at)
        elif kind == "move_project":
            # Emails never change project in the service; the triggers would still count it.
            ids = self.some(ledger, 4)
            project = rng.choice(PROJECTS)
            await session.execute(
                text("UPDATE emails SET project_id = :project WHERE id = ANY(:ids)"),
                {"ids": ids, "project": project},
            )
            for email_id in ids:
                present[email_id] = replace(present[email_id], project=project)
        elif kind == "upsert":
            # One INSERT … ON CONFLICT DO UPDATE: both the insert and the update trigger.
            existing = {
                email_id: replace(present[email_id], status=rng.choice(STATUSES))
                for email_id in self.some(ledger, 5)
            }
            rows = {**self.new_rows(rng.randint(1, 4)), **existing}
            sql, params = _values(rows)
            await session.execute(
                text(
                    f"{sql} ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, "
                    "sent_at = EXCLUDED.sent_at, failed_at = EXCLUDED.failed_at, "
                    "cancelled_at = EXCLUDED.cancelled_at"
                ),
                params,
            )
            for email_id, row in rows.items():
                present[email_id] = (
                    replace(present[email_id], status=row.status) if email_id in present else row
                )
        elif kind == "delete_one":
            (email_id,) = self.some(ledger, 1)
            await session.execute(text("DELETE FROM emails WHERE id = :id"), {"id": email_id})
            ledger.delete([email_id])
        elif kind == "delete_bulk":
            ids = self.some(ledger, 10)
            await session.execute(text("DELETE FROM emails WHERE id = ANY(:ids)"), {"ids": ids})
            ledger.delete(ids)
        else:  # delete_range: a purge of everything older than some instant in a window
            low = self.instant()
            high = low + timedelta(minutes=rng.randint(1, 120))
            await session.execute(
                text("DELETE FROM emails WHERE created_at >= :low AND created_at < :high"),
                {"low": low, "high": high},
            )
            ledger.delete([i for i, r in list(present.items()) if low <= r.created_at < high])

    async def run(self, sessions: async_sessionmaker[AsyncSession], operations: int) -> None:
        done = 0
        while done < operations:
            async with sessions() as session:
                pending = self.ledger.copy()
                for _ in range(min(operations - done, self.rng.randint(1, 4))):
                    if self.rng.random() < 0.08:
                        # A savepoint rolled back: its trigger work goes with it.
                        scratch = pending.copy()
                        savepoint = await session.begin_nested()
                        await self.operation(session, scratch)
                        await savepoint.rollback()
                    else:
                        await self.operation(session, pending)
                    done += 1
                if self.rng.random() < 0.1:
                    await session.rollback()
                else:
                    await session.commit()
                    self.ledger = pending
            if done < operations and self.rng.random() < 0.12:
                await self.checked_fold(sessions)

    async def checked_fold(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        """Read with some deltas folded and some not; fold; the same reads say the same."""
        filters = [random_filter(self.reads_rng, self.window) for _ in range(6)]
        ranges = [random_range(self.reads_rng, self.window) for _ in range(3)]
        async with sessions() as session:
            await assert_counters_match(session, self.ledger)
            before = await answers(session, self.ledger, filters, ranges)
        await fold_and_check(sessions, self.ledger)
        async with sessions() as session:
            after = await answers(session, self.ledger, filters, ranges)
        assert after == before, "a fold changed what count_emails / count_created_between say"
        self.folds += 1


@pytest.mark.parametrize(
    ("seed", "window"),
    [
        # Each window spans a DST change of some zone below, so some days are 23 or 25 h.
        (1, datetime(2026, 3, 27, 7, 31, 5, tzinfo=UTC)),  # Europe/Berlin springs forward
        (2, datetime(2026, 4, 3, 22, 0, tzinfo=UTC)),  # Pacific/Chatham falls back
        (3, datetime(2026, 10, 23, 23, 45, tzinfo=UTC)),  # Europe/Berlin falls back
        (4, datetime(2026, 10, 31, 3, 14, 15, 926535, tzinfo=UTC)),  # America/St_Johns
    ],
)
async def test_counters_follow_a_random_history(
    sessions: async_sessionmaker[AsyncSession], seed: int, window: datetime
) -> None:
    history = History(random.Random(seed), window, reads_rng=random.Random(seed * 31))
    await history.run(sessions, operations=300)
    # Some writes after the last fold: the reads below add folded and unfolded counts.
    last = history.new_rows(6)
    async with sessions() as session:
        await insert_rows(session, last)
        await session.commit()
    history.ledger.present.update(last)
    ledger, rng = history.ledger, random.Random(seed * 7919)
    assert ledger.purged, "the history should have purged some rows"
    assert history.folds >= 2, "the history should have folded at some points"

    filters = [random_filter(rng, window) for _ in range(250)]
    ranges = zone_days(window, 6) + [random_range(rng, window) for _ in range(40)]
    async with sessions() as session:
        # What the last fold left folded, plus the deltas written since.
        assert await delta_rows(session) > 0, "the history should end with deltas unfolded"
        await assert_counters_match(session, ledger)
        for log_filter in filters:
            exact = await exact_count(session, log_filter)
            assert exact == ledger.matching(log_filter), f"test ledger disagrees: {log_filter}"
        before = await answers(session, ledger, filters, ranges)

    await fold_and_check(sessions, ledger)
    async with sessions() as session:
        after = await answers(session, ledger, filters[:80], ranges)
    assert after == before[:80] + before[len(filters) :], (
        "the last fold changed what count_emails / count_created_between say"
    )


# -- 2. concurrent writers --------------------------------------------------------------


async def _is_superuser(engine: AsyncEngine) -> bool:
    async with engine.connect() as connection:
        value = await connection.scalar(text("SELECT current_setting('is_superuser')"))
    return bool(value == "on")


async def _short_waits(db: Db, superuser: bool) -> None:
    """Find a deadlock in 50 ms (not 1 s), and never wait on a lock forever."""
    if superuser:
        await db.execute(text("SET LOCAL deadlock_timeout = '50ms'"))
    await db.execute(text("SET LOCAL lock_timeout = '5s'"))


def _sqlstate(error: DBAPIError) -> str | None:
    return getattr(error.orig, "sqlstate", None)


async def _writer(
    sessions: async_sessionmaker[AsyncSession],
    index: int,
    window: datetime,
    superuser: bool,
    deadlocks: list[str],
) -> Ledger:
    """A few transactions inserting and moving this writer's own emails."""
    rng = random.Random(1000 + index)
    committed = Ledger()
    for round_ in range(4):
        pending = committed.copy()
        rows = {
            new_id(rng): Row(
                random_instant(rng, window, timedelta(hours=2)),
                rng.choice(STATUSES),
                rng.choice(RECIPIENTS),
                PROJECTS[index % 2],
            )
            for _ in range(rng.randint(1, 6))
        }
        async with sessions() as session:
            try:
                await _short_waits(session, superuser)
                await insert_rows(session, rows)
                pending.present.update(rows)
                ids = sorted(pending.present)
                moved = rng.sample(ids, rng.randint(1, len(ids)))
                status = rng.choice(STATUSES)
                await set_status(session, moved, status)
                for email_id in moved:
                    pending.present[email_id] = replace(pending.present[email_id], status=status)
                if rng.random() < 0.3:
                    gone = rng.choice(sorted(pending.present))
                    await session.execute(text("DELETE FROM emails WHERE id = :id"), {"id": gone})
                    pending.delete([gone])
                if rng.random() < 0.25:
                    await session.rollback()
                else:
                    await session.commit()
                    committed = pending
            except DBAPIError as error:
                if _sqlstate(error) != DEADLOCK:
                    raise
                deadlocks.append(f"writer {index}, round {round_}: {error.orig}")
                await session.rollback()
        if rng.random() < 0.25:
            # Writers fold too (as every API and worker process does); 0 if another is.
            await fold_once(sessions)
    return committed


async def _fold_until(sessions: async_sessionmaker[AsyncSession], done: asyncio.Event) -> list[int]:
    """fold_once over and over (at least once) until the writers are done."""
    folded: list[int] = []
    while True:
        folded.append(await fold_once(sessions))
        if done.is_set():
            return folded


async def test_concurrent_writers_and_folds_keep_the_counters_exact(settings: Settings) -> None:
    engine = create_engine(settings, pool_size=24)
    try:
        superuser = await _is_superuser(engine)
        sessions = create_session_factory(engine)
        window = datetime(2026, 11, 2, 8, 52, 30, tzinfo=UTC)  # two hours: 9 buckets
        deadlocks: list[str] = []
        done = asyncio.Event()

        async def write() -> list[Ledger]:
            try:
                return await asyncio.gather(
                    *(_writer(sessions, i, window, superuser, deadlocks) for i in range(20))
                )
            finally:
                done.set()

        # Two folders racing each other (the advisory lock lets one through at a time).
        async with asyncio.TaskGroup() as group:
            writing = group.create_task(write())
            for _ in range(2):
                group.create_task(_fold_until(sessions, done))
        ledger = Ledger()
        for each in writing.result():
            ledger.merge(each)

        async with engine.connect() as connection:
            await assert_counters_match(connection, ledger)
        await fold_and_check(sessions, ledger)
        async with sessions() as session:
            start, end = buckets.floor(window), buckets.ceil(window + timedelta(hours=2))
            for project_id in VIEWS:
                everything = LogFilter(project_id=project_id)
                counted = await log_repository.count_emails(session, everything)
                assert counted == ledger.matching(everything)
                assert await log_repository.count_created_between(
                    session, start, end, project_id=project_id
                ) == ledger.report(start, end, project_id)
    finally:
        await engine.dispose()
    assert not deadlocks, f"concurrent writers deadlocked: {deadlocks}"


async def test_two_transactions_writing_statuses_in_opposite_orders_do_not_deadlock(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """The minimal case behind the concurrency test: A writes queued then sent, B the reverse.

    (With counter rows updated in the writers' transactions, two such transactions
    deadlocked on the email_status_totals rows.)
    """
    at = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    ledger = Ledger()

    def one(status: str, minutes: int) -> dict[uuid.UUID, Row]:
        row = {uuid.uuid4(): Row(at + timedelta(minutes=minutes), status, RECIPIENTS[0])}
        ledger.present.update(row)
        return row

    engine = create_engine(settings, pool_size=2)
    try:
        superuser = await _is_superuser(engine)
        async with engine.connect() as first, engine.connect() as second:
            for connection in (first, second):
                await _short_waits(connection, superuser)
            await insert_rows(first, one("queued", 0))
            await insert_rows(second, one("sent", 20))
            outcomes = await asyncio.gather(
                insert_rows(first, one("sent", 40)),
                insert_rows(second, one("queued", 60)),
                return_exceptions=True,
            )
            errors = [o for o in outcomes if isinstance(o, BaseException)]
            assert not errors, (
                "two transactions, one inserting a queued then a sent email, the other a "
                f"sent then a queued one, got in each other's way: {errors}"
            )
            # A fold meanwhile neither waits for them nor sees their uncommitted deltas.
            assert await fold_once(sessions) == 0
            await first.commit()
            await second.commit()
    finally:
        await engine.dispose()
    async with sessions() as session:
        await assert_counters_match(session, ledger)
        assert await log_repository.count_emails(session, LogFilter(project_id=None)) == 4
    await fold_and_check(sessions, ledger)


# -- 3. folding ---------------------------------------------------------------------------


def fresh_rows(rng: random.Random, ledger: Ledger, n: int) -> dict[uuid.UUID, Row]:
    """n new rows, recorded in ledger (for a transaction that will commit)."""
    window = datetime(2026, 11, 3, 23, 20, tzinfo=UTC)
    rows = {
        new_id(rng): Row(
            random_instant(rng, window, timedelta(hours=3)),
            status,
            RECIPIENTS[2],
            rng.choice(PROJECTS),
        )
        for status in rng.choices(STATUSES, k=n)
    }
    ledger.present.update(rows)
    return rows


async def _commit(sessions: async_sessionmaker[AsyncSession], rows: dict[uuid.UUID, Row]) -> None:
    async with sessions() as session:
        await insert_rows(session, rows)
        await session.commit()


async def test_one_fold_at_a_time(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """While one fold's transaction is open, any other fold returns 0 at once."""
    rng, ledger = random.Random(5), Ledger()
    for _ in range(3):
        await _commit(sessions, fresh_rows(rng, ledger, 4))
    async with sessions() as session:
        pending = await delta_rows(session)
    assert pending > 0

    for ending in ("rollback", "commit"):
        async with engine.connect() as holder:
            assert await holder.scalar(_FOLD) == pending
            async with sessions() as session:
                # Were it not for the advisory lock, this would wait on the holder's rows.
                await session.execute(text("SET LOCAL lock_timeout = '2s'"))
                assert await log_repository.fold_counts(session) == 0
                # The holder's fold is not committed: readers still add up the deltas.
                await assert_counters_match(session, ledger)
                assert await log_repository.count_emails(
                    session, LogFilter(project_id=None)
                ) == len(ledger.present)
            assert await asyncio.wait_for(fold_once(sessions), timeout=10) == 0
            if ending == "rollback":
                await holder.rollback()  # the deltas are back, for the next fold
            else:
                await holder.commit()
        async with sessions() as session:
            assert await delta_rows(session) == (pending if ending == "rollback" else 0)
            await assert_counters_match(session, ledger)

    assert await fold_once(sessions) == 0
    async with sessions() as session:
        await assert_all_folded(session, ledger)


async def test_a_fold_leaves_uncommitted_deltas_for_the_next(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    rng, ledger = random.Random(6), Ledger()
    await _commit(sessions, fresh_rows(rng, ledger, 8))
    async with sessions() as session:
        pending = await delta_rows(session)

    later = Ledger()
    async with engine.connect() as writer:  # transaction A, open across the fold
        await insert_rows(writer, fresh_rows(rng, later, 5))
        assert await fold_once(sessions) == pending, "the fold should fold nothing of A's"
        async with sessions() as session:
            await assert_all_folded(session, ledger)  # A not committed: not counted yet
        await writer.commit()
    ledger.merge(later)

    async with sessions() as session:
        assert await delta_rows(session) > 0, "A's deltas should wait for the next fold"
        await assert_counters_match(session, ledger)
        assert await log_repository.count_emails(session, LogFilter(project_id=None)) == len(
            ledger.present
        )
    await fold_and_check(sessions, ledger)


async def _blocked_by(db: Db, waiter: int, holder: int) -> bool:
    blocked = await db.scalar(
        text("SELECT :h = ANY(pg_blocking_pids(:w))"), {"w": waiter, "h": holder}
    )
    return bool(blocked)


# What holds a fold up mid-statement (after its snapshot): a row lock on a row it writes.
_STOPPERS = {
    "delta": "SELECT id FROM email_count_deltas ORDER BY id DESC LIMIT 1 FOR UPDATE",
    "cell": (
        "SELECT bucket FROM email_counts WHERE (project_id, bucket, status) IN "
        "(SELECT project_id, bucket, status FROM email_count_deltas) LIMIT 1 FOR UPDATE"
    ),
    "total": (
        "SELECT status FROM email_status_totals WHERE (project_id, status) IN "
        "(SELECT project_id, status FROM email_count_deltas) LIMIT 1 FOR UPDATE"
    ),
}


@pytest.mark.parametrize("stopper", list(_STOPPERS))
async def test_a_delta_committed_while_a_fold_runs_is_not_lost(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], stopper: str
) -> None:
    """A fold held up mid-statement while writers commit: it folds what its snapshot saw
    (no more), and what they committed meanwhile waits, whole, for the next fold."""
    rng, ledger = random.Random(7), Ledger()
    first = fresh_rows(rng, ledger, 8)
    await _commit(sessions, first)
    await fold_and_check(sessions, ledger)
    # The same cells again: the fold adds to counter rows that exist.
    again = {new_id(rng): row for row in first.values()}
    ledger.present.update(again)
    await _commit(sessions, again)
    async with sessions() as session:
        pending = await delta_rows(session)
    early, late = Ledger(), Ledger()

    async with (
        engine.connect() as locker,
        engine.connect() as folder,
        engine.connect() as writer_a,
        engine.connect() as writer_b,
    ):
        locked = await locker.execute(text(_STOPPERS[stopper]))
        assert locked.all(), "nothing to lock"
        locker_pid = await locker.scalar(text("SELECT pg_backend_pid()"))
        folder_pid = await folder.scalar(text("SELECT pg_backend_pid()"))
        await folder.commit()
        await insert_rows(writer_a, fresh_rows(rng, early, 4))  # before the fold
        fold = asyncio.create_task(folder.scalar(_FOLD))
        deadline = asyncio.get_running_loop().time() + 10
        async with engine.connect() as watcher:
            while not await _blocked_by(watcher, folder_pid, locker_pid):
                assert not fold.done(), f"the fold did not wait for the locked {stopper} row"
                assert asyncio.get_running_loop().time() < deadline, "the fold never got stuck"
                await asyncio.sleep(0.005)
        await writer_a.commit()  # while the fold runs
        await insert_rows(writer_b, fresh_rows(rng, late, 3))  # after its snapshot
        await writer_b.commit()
        await locker.commit()
        assert await fold == pending, "the fold should fold what its snapshot saw, no more"
        await folder.commit()
    ledger.merge(early)
    ledger.merge(late)

    async with sessions() as session:
        assert await delta_rows(session) > 0, "deltas committed during the fold should wait"
        await assert_counters_match(session, ledger)
        assert await log_repository.count_emails(session, LogFilter(project_id=None)) == len(
            ledger.present
        )
    await fold_and_check(sessions, ledger)
    await fold_and_check(sessions, ledger)  # nothing left: folds 0, still exact


# -- 4. the backfill of migration 0003 (and 0006 putting it in the default project) ------


async def test_migration_counts_the_emails_already_there(database_url: str) -> None:
    name = f"mailroom_counters_{secrets.token_hex(4)}"
    url = make_url(database_url).set(database=name)
    rendered = url.render_as_string(hide_password=False)
    rng = random.Random(3)
    window = datetime(2026, 10, 24, 22, 7, tzinfo=UTC)
    try:
        await migrate(rendered, "0002")
        engine = create_async_engine(rendered)
        try:
            ledger = Ledger()
            rows = {
                new_id(rng): Row(
                    random_instant(rng, window, SPAN), rng.choice(LEGACY_STATUSES), RECIPIENTS[0]
                )
                for _ in range(60)
            }
            async with engine.begin() as connection:
                await insert_rows(connection, rows, legacy=True)
                # Gone before the counters existed: nobody can count these any more.
                gone = sorted(rows)[:5]
                await connection.execute(
                    text("DELETE FROM emails WHERE id = ANY(:ids)"), {"ids": gone}
                )
            ledger.present = {k: v for k, v in rows.items() if k not in gone}

            await migrate(rendered)

            async with engine.connect() as connection:
                # The backfill writes the folded tables; there is nothing to fold yet.
                await assert_all_folded(connection, ledger)
            # The triggers carry on from the backfilled numbers.
            async with engine.begin() as connection:
                ids = sorted(ledger.present)
                await set_status(connection, ids[:10], EmailStatus.SENT.value)
                await connection.execute(
                    text("DELETE FROM emails WHERE id = ANY(:ids)"), {"ids": ids[10:20]}
                )
                more = {
                    new_id(rng): Row(random_instant(rng, window, SPAN), "queued", RECIPIENTS[1])
                    for _ in range(5)
                }
                await insert_rows(connection, more)
            for email_id in ids[:10]:
                ledger.present[email_id] = replace(ledger.present[email_id], status="sent")
            ledger.delete(ids[10:20])
            ledger.present.update(more)
            sessions = create_session_factory(engine)
            filters = [LogFilter(project_id=None), *(random_filter(rng, window) for _ in range(20))]
            days = zone_days(window, 5)
            async with sessions() as session:
                assert await delta_rows(session) > 0
                await assert_counters_match(session, ledger)
                before = await answers(session, ledger, filters, days)
            await fold_and_check(sessions, ledger)
            async with sessions() as session:
                assert await answers(session, ledger, filters, days) == before
        finally:
            await engine.dispose()
    finally:
        server = await asyncpg.connect(
            user=url.username,
            password=url.password,
            host=url.host,
            port=url.port,
            database="postgres",
        )
        try:
            await server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await server.close()
