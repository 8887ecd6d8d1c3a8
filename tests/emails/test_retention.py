"""Retention (emails.retention, emails.purge_repository) against real PostgreSQL.

What a purge deletes (final emails older than the cutoff, nothing else), how (batches of
their own transactions, rows held elsewhere skipped), what goes with an email (attempts,
attachments, idempotency records), what stays true (the daily report), and the worker's
scheduled run (one worker at a time, bounded).
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from structlog.testing import capture_logs

from mailroom.auth.scopes import Scope
from mailroom.auth.service import create_key
from mailroom.emails import log_repository, purge_repository, retention
from mailroom.emails.counters import fold_once
from mailroom.emails.log_query import day_bounds
from mailroom.emails.log_repository import LogFilter, StatusCounts
from mailroom.emails.models import (
    DeliveryAttempt,
    Email,
    EmailAttachment,
    IdempotencyKey,
)
from mailroom.emails.retention import PURGEABLE_STATUSES, parse_duration, parse_statuses
from mailroom.emails.states import EmailStatus
from mailroom.settings import Settings
from tests.conftest import running_worker
from tests.support.factories import email_row, insert_emails
from tests.support.smtp_server import SmtpTestServer
from tests.support.waiting import eventually

# The statuses these tests make (suppressed and bounced purge as any final one does).
ALL = tuple(s.value for s in EmailStatus if s not in (EmailStatus.SUPPRESSED, EmailStatus.BOUNCED))
NOT_FINAL = ("queued", "sending", "retrying", "scheduled")
FINAL = ("sent", "failed", "cancelled")
AGE = timedelta(days=90)

Sessions = async_sessionmaker[AsyncSession]

# Final statuses none of these tests makes: counted, never found.
_NEW_FINAL = {EmailStatus.SUPPRESSED: 0, EmailStatus.BOUNCED: 0}


def _email(status: str, created_at: datetime) -> Email:
    extra = {"cancelled_at": created_at} if status == "cancelled" else {}
    return email_row(created_at, status, **extra)


async def _present(sessions: Sessions) -> dict[uuid.UUID, str]:
    async with sessions() as session:
        rows = await session.execute(select(Email.id, Email.status))
        return dict(rows.all())


# -- parsing the command's flags -----------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("90d", timedelta(days=90)),
        ("12h", timedelta(hours=12)),
        ("30m", timedelta(minutes=30)),
        ("2w", timedelta(weeks=2)),
        (" 7D ", timedelta(days=7)),
        ("36500d", timedelta(days=36_500)),
    ],
)
def test_durations(value: str, expected: timedelta) -> None:
    assert parse_duration(value) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("0d", "is zero"),
        ("0w", "is zero"),
        ("-5d", "is negative"),
        ("90", "not a duration"),
        ("d", "not a duration"),
        ("1.5d", "not a duration"),
        ("90 days", "not a duration"),
        ("90s", "not a duration"),
        ("", "not a duration"),
        ("36501d", "too long"),
        ("99999999999999999999999w", "too long"),
    ],
)
def test_bad_durations_say_why(value: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_duration(value)


def test_statuses_are_final_ones_in_report_order() -> None:
    assert PURGEABLE_STATUSES == (
        EmailStatus.SENT,
        EmailStatus.FAILED,
        EmailStatus.CANCELLED,
        EmailStatus.SUPPRESSED,
        EmailStatus.BOUNCED,
    )
    assert parse_statuses("sent,failed,cancelled,suppressed,bounced") == PURGEABLE_STATUSES
    assert parse_statuses(" Cancelled , sent,sent,") == (EmailStatus.SENT, EmailStatus.CANCELLED)
    assert parse_statuses("failed") == (EmailStatus.FAILED,)


@pytest.mark.parametrize("status", NOT_FINAL)
def test_a_status_that_is_not_final_is_refused_with_the_reason(status: str) -> None:
    with pytest.raises(ValueError, match="not a final status") as refused:
        parse_statuses(f"sent,{status}")
    assert status in str(refused.value)
    assert "waiting" in str(refused.value) or "being delivered" in str(refused.value)


@pytest.mark.parametrize(("value", "reason"), [("bogus", "unknown status"), (" , ", "at least")])
def test_unknown_or_missing_statuses_are_refused(value: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_statuses(value)


# -- what a purge deletes -----------------------------------------------------------

db = pytest.mark.usefixtures("clean")


@db
async def test_a_purge_deletes_old_final_emails_and_spares_every_other(
    sessions: Sessions,
) -> None:
    now = datetime.now(UTC)
    old = {status: _email(status, now - timedelta(days=400)) for status in ALL}
    recent = {status: _email(status, now - timedelta(days=89)) for status in FINAL}
    await insert_emails(sessions, *old.values(), *recent.values())

    result = await retention.purge(sessions, before=now - AGE, batch_size=1000)

    assert result.deleted == {EmailStatus(s): 1 for s in FINAL} | _NEW_FINAL
    assert result.total == 3 and result.complete and not result.locked_out
    left = await _present(sessions)
    assert left == {
        **{old[s].id: s for s in NOT_FINAL},  # old, but not final: never purged
        **{recent[s].id: s for s in FINAL},  # final, but younger than the cutoff
    }


@db
async def test_only_the_statuses_asked_for_are_purged(sessions: Sessions) -> None:
    now = datetime.now(UTC)
    old = {status: _email(status, now - timedelta(days=400)) for status in FINAL}
    await insert_emails(sessions, *old.values())

    result = await retention.purge(
        sessions, before=now - AGE, batch_size=1000, statuses=(EmailStatus.FAILED,)
    )

    assert result.deleted == {EmailStatus.FAILED: 1}
    assert await _present(sessions) == {old["sent"].id: "sent", old["cancelled"].id: "cancelled"}


@db
async def test_nothing_but_final_statuses_can_be_asked_for(sessions: Sessions) -> None:
    before = datetime.now(UTC)
    queued = _email("queued", before - timedelta(days=400))
    await insert_emails(sessions, queued)
    for status in NOT_FINAL:
        with pytest.raises(ValueError, match="only final"):
            await retention.purge(
                sessions, before=before, batch_size=10, statuses=(EmailStatus(status),)
            )
        with pytest.raises(ValueError, match="only final"):
            await retention.count_purgeable(sessions, before=before, statuses=[EmailStatus(status)])
        async with sessions() as session:
            with pytest.raises(ValueError, match="not a final status"):
                await purge_repository.delete_batch(
                    session, status=EmailStatus(status), before=before, limit=10
                )
    assert await _present(sessions) == {queued.id: "queued"}


@db
async def test_counting_what_would_go_deletes_nothing(sessions: Sessions) -> None:
    now = datetime.now(UTC)
    rows = [
        *(_email("sent", now - timedelta(days=100 + n)) for n in range(3)),
        _email("failed", now - timedelta(days=200)),
        _email("queued", now - timedelta(days=200)),
        _email("sent", now - timedelta(days=10)),
    ]
    await insert_emails(sessions, *rows)

    counts = await retention.count_purgeable(sessions, before=now - AGE)

    assert counts == {
        EmailStatus.SENT: 3,
        EmailStatus.FAILED: 1,
        EmailStatus.CANCELLED: 0,
        **_NEW_FINAL,
    }
    assert len(await _present(sessions)) == len(rows)
    result = await retention.purge(sessions, before=now - AGE, batch_size=1000)
    assert result.deleted == counts  # the count was what the purge then deleted


# -- how: batches, each its own transaction ------------------------------------------


@db
async def test_a_batch_size_of_two_deletes_five_emails_in_three_transactions(
    sessions: Sessions,
) -> None:
    now = datetime.now(UTC)
    created = now.replace(minute=0, second=0, microsecond=0) - timedelta(days=400)
    rows = [_email("sent", created + timedelta(seconds=n)) for n in range(5)]
    await insert_emails(sessions, *rows)
    seen: list[int] = []

    result = await retention.purge(
        sessions, before=now - AGE, batch_size=2, on_batch=lambda r: seen.append(r.total)
    )

    assert result.deleted[EmailStatus.SENT] == 5
    assert result.batches == 3
    assert seen == [2, 4, 5]
    assert await _present(sessions) == {}
    # Each DELETE statement's counter trigger appended one delta row, in the transaction
    # that deleted: three transactions (xmin), deleting 2, 2 and 1 emails.
    async with sessions() as session:
        deltas = (
            await session.execute(
                text(
                    "SELECT xmin::text::bigint AS tx, purged FROM email_count_deltas "
                    "WHERE purged > 0 ORDER BY id"
                )
            )
        ).all()
    assert [d.purged for d in deltas] == [2, 2, 1]
    assert len({d.tx for d in deltas}) == 3


@db
async def test_a_transaction_never_deletes_more_than_the_batch_size_across_statuses(
    sessions: Sessions,
) -> None:
    now = datetime.now(UTC)
    created = now.replace(minute=0, second=0, microsecond=0) - timedelta(days=400)
    statuses = ["sent", "sent", "sent", "failed", "failed", "cancelled"]
    await insert_emails(
        sessions, *(_email(s, created + timedelta(seconds=n)) for n, s in enumerate(statuses))
    )

    result = await retention.purge(sessions, before=now - AGE, batch_size=2)

    assert result.deleted == {
        EmailStatus.SENT: 3,
        EmailStatus.FAILED: 2,
        EmailStatus.CANCELLED: 1,
        **_NEW_FINAL,
    }
    assert await _present(sessions) == {}
    async with sessions() as session:
        deltas = (
            await session.execute(
                text(
                    "SELECT xmin::text::bigint AS tx, sum(purged) AS purged "
                    "FROM email_count_deltas WHERE purged > 0 GROUP BY 1 ORDER BY min(id)"
                )
            )
        ).all()
    assert [d.purged for d in deltas] == [2, 2, 2]  # sent+sent, sent+failed, failed+cancelled
    assert result.batches == 4  # the last one found that cancelled had no more


@db
async def test_a_run_stops_after_its_batch_limit_and_the_next_one_goes_on(
    sessions: Sessions,
) -> None:
    now = datetime.now(UTC)
    await insert_emails(
        sessions, *(_email("failed", now - timedelta(days=400, minutes=n)) for n in range(5))
    )

    first = await retention.purge(sessions, before=now - AGE, batch_size=2, max_batches=2)
    assert (first.total, first.batches, first.complete) == (4, 2, False)
    assert len(await _present(sessions)) == 1

    second = await retention.purge(sessions, before=now - AGE, batch_size=2, max_batches=2)
    assert (second.total, second.complete) == (1, True)
    assert await _present(sessions) == {}


@db
async def test_oldest_go_first(sessions: Sessions) -> None:
    now = datetime.now(UTC)
    rows = [_email("sent", now - timedelta(days=100 + n)) for n in range(4)]
    await insert_emails(sessions, *rows)

    await retention.purge(sessions, before=now - AGE, batch_size=2, max_batches=1)

    assert set(await _present(sessions)) == {rows[0].id, rows[1].id}


@db
async def test_an_email_held_by_another_transaction_is_skipped_not_waited_for(
    sessions: Sessions, engine: AsyncEngine
) -> None:
    now = datetime.now(UTC)
    failed = _email("failed", now - timedelta(days=400))
    sent = _email("sent", now - timedelta(days=400))
    await insert_emails(sessions, failed, sent)

    async with engine.connect() as retrying:
        # A retry moving the failed email back to `queued`, not committed yet.
        await retrying.execute(
            text(
                "UPDATE emails SET status = 'queued', failed_at = NULL, next_attempt_at = now() "
                "WHERE id = :id"
            ),
            {"id": failed.id},
        )
        result = await asyncio.wait_for(
            retention.purge(sessions, before=now - AGE, batch_size=1000), timeout=30
        )
        assert result.deleted == {
            EmailStatus.SENT: 1,
            EmailStatus.FAILED: 0,
            EmailStatus.CANCELLED: 0,
            **_NEW_FINAL,
        }
        await retrying.commit()

    # It is queued now, no longer final, and a later purge leaves it alone too.
    assert await _present(sessions) == {failed.id: "queued"}
    again = await retention.purge(sessions, before=now - AGE, batch_size=1000)
    assert again.total == 0
    assert await _present(sessions) == {failed.id: "queued"}


# -- what goes with an email -----------------------------------------------------------


@db
async def test_attempts_attachments_and_idempotency_records_go_with_their_email(
    sessions: Sessions,
) -> None:
    now = datetime.now(UTC)
    created = now - timedelta(days=400)
    old, young = _email("sent", created), _email("sent", now - timedelta(days=1))
    async with sessions() as session:
        api_key, _ = await create_key(
            session, name=f"retention-{uuid.uuid4()}", scopes=[Scope.SEND]
        )
        session.add_all([old, young])
        await session.flush()
        for email in (old, young):
            session.add_all(
                [
                    *(
                        DeliveryAttempt(
                            email_id=email.id,
                            attempt_number=n,
                            started_at=created,
                            finished_at=created,
                            outcome="transient" if n == 1 else "accepted",
                            duration_ms=5,
                        )
                        for n in (1, 2)
                    ),
                    EmailAttachment(
                        email_id=email.id,
                        position=0,
                        filename="a.txt",
                        content_type="text/plain",
                        size=2,
                        content=b"hi",
                    ),
                    IdempotencyKey(
                        api_key_id=api_key.id,
                        key=f"key-{email.id}",
                        request_hash="0" * 64,
                        email_id=email.id,
                        response={},
                        created_at=created,
                    ),
                ]
            )
        await session.commit()

    result = await retention.purge(sessions, before=now - AGE, batch_size=1000)
    assert result.total == 1

    async with sessions() as session:
        for model in (DeliveryAttempt, EmailAttachment, IdempotencyKey):
            owners = (await session.execute(select(model.email_id))).scalars().all()
            assert owners == [young.id] * (2 if model is DeliveryAttempt else 1)
        assert await session.get(type(api_key), api_key.id) is not None


# -- what stays true: the daily report ------------------------------------------------


@db
async def test_the_report_of_a_purged_day_is_unchanged_and_the_total_drops(
    sessions: Sessions,
) -> None:
    now = datetime.now(UTC)
    day = (now - timedelta(days=200)).date()
    start, end = day_bounds(day, ZoneInfo("UTC"))
    statuses = ["sent", "sent", "sent", "failed", "cancelled", "queued"]
    await insert_emails(
        sessions, *(_email(s, start + timedelta(hours=1 + n)) for n, s in enumerate(statuses))
    )
    whole_day = LogFilter(project_id=None, since=start, until=end)
    unaligned = LogFilter(project_id=None, since=start + timedelta(minutes=7), until=end)

    async def counts() -> tuple[StatusCounts, int, int, int]:
        async with sessions() as session:
            return (
                await log_repository.count_created_between(session, start, end, project_id=None),
                await log_repository.count_emails(session, LogFilter(project_id=None)),
                await log_repository.count_emails(session, whole_day),
                await log_repository.count_emails(session, unaligned),
            )

    report, *totals = await counts()
    assert (report.total, report.sent, report.failed, totals) == (6, 3, 1, [6, 6, 6])
    result = await retention.purge(sessions, before=now - AGE, batch_size=2)
    assert result.total == 5
    # Before and after the counters are folded (the report reads both).
    assert await counts() == (report, 1, 1, 1)
    await fold_once(sessions)
    assert await counts() == (report, 1, 1, 1)


@db
async def test_get_logs_keeps_todays_summary_after_a_purge(
    client: httpx.AsyncClient, sessions: Sessions
) -> None:
    # Created at today's first instant (UTC), so "today" for the API whenever this runs.
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    await insert_emails(
        sessions,
        *(_email(s, midnight + timedelta(microseconds=n)) for n, s in enumerate(FINAL * 2)),
    )

    async def log() -> tuple[dict[str, object], int]:
        response = await client.get("/logs/email", params={"tz": "UTC"})
        assert response.status_code == 200, response.text
        page = response.json()
        return page["summary"], page["pagination"]["total"]

    summary, total = await log()
    assert (summary["total"], summary["sent"], summary["failed"], total) == (6, 2, 2, 6)

    result = await retention.purge(sessions, before=midnight + timedelta(seconds=1), batch_size=4)
    assert result.total == 6

    assert await log() == (summary, 0)


# -- the worker's scheduled purge -------------------------------------------------------


@db
async def test_a_scheduled_run_purges_final_emails_past_retention_days(
    sessions: Sessions, settings_factory: Callable[..., Settings]
) -> None:
    settings = settings_factory(retention_days=30, purge_batch_size=2)
    now = datetime.now(UTC)
    old = {status: _email(status, now - timedelta(days=31)) for status in ALL}
    young = _email("sent", now - timedelta(days=29))
    extra_old_sent = _email("sent", now - timedelta(days=365))
    await insert_emails(sessions, *old.values(), young, extra_old_sent)

    with capture_logs() as logs:
        result = await retention.purge_expired(sessions, settings, now=now)

    assert result is not None
    assert result.deleted == {
        EmailStatus.SENT: 2,
        EmailStatus.FAILED: 1,
        EmailStatus.CANCELLED: 1,
        **_NEW_FINAL,
    }
    assert result.before == now - timedelta(days=30)
    assert await _present(sessions) == {
        **{old[s].id: s for s in NOT_FINAL},
        young.id: "sent",
    }
    purged = [entry for entry in logs if entry["event"] == "retention.purged"]
    assert len(purged) == 1
    assert purged[0]["log_level"] == "info"
    assert {k: purged[0][k] for k in ("sent", "failed", "cancelled", "total")} == {
        "sent": 2,
        "failed": 1,
        "cancelled": 1,
        "total": 4,
    }
    assert purged[0]["retention_days"] == 30


@db
async def test_a_scheduled_run_does_nothing_without_retention_days(
    sessions: Sessions, settings_factory: Callable[..., Settings]
) -> None:
    await insert_emails(sessions, _email("sent", datetime.now(UTC) - timedelta(days=10_000)))
    for settings in (settings_factory(), settings_factory(retention_days=0)):
        assert settings.retention_days == 0
        assert await retention.purge_expired(sessions, settings) is None
    assert len(await _present(sessions)) == 1


@db
async def test_a_scheduled_run_is_bounded(
    sessions: Sessions, settings_factory: Callable[..., Settings]
) -> None:
    settings = settings_factory(retention_days=1, purge_batch_size=2)
    now = datetime.now(UTC)
    await insert_emails(
        sessions, *(_email("sent", now - timedelta(days=2, seconds=n)) for n in range(7))
    )

    first = await retention.purge_expired(sessions, settings, now=now, max_batches=3)
    assert first is not None and (first.total, first.complete) == (6, False)
    second = await retention.purge_expired(sessions, settings, now=now, max_batches=3)
    assert second is not None and (second.total, second.complete) == (1, True)


@db
async def test_one_worker_at_a_time_runs_the_scheduled_purge(
    sessions: Sessions, engine: AsyncEngine, settings_factory: Callable[..., Settings]
) -> None:
    settings = settings_factory(retention_days=1)
    email = _email("sent", datetime.now(UTC) - timedelta(days=2))
    await insert_emails(sessions, email)

    async with engine.connect() as other_worker:
        await other_worker.execute(
            text("SELECT pg_advisory_xact_lock(:k)"), {"k": retention.RETENTION_LOCK}
        )
        assert await retention.purge_expired(sessions, settings) is None
        assert set(await _present(sessions)) == {email.id}
        await other_worker.rollback()  # its run ended

    result = await retention.purge_expired(sessions, settings)
    assert result is not None and result.total == 1


@db
async def test_a_worker_with_retention_days_purges_soon_after_it_starts(
    sessions: Sessions,
    settings_factory: Callable[..., Settings],
    smtp_server: SmtpTestServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The hook in DeliveryWorker.start(), with the first run brought forward.
    import mailroom.worker.runner as runner

    forever = functools.partial(retention.purge_expired_forever, first_delay=0)
    monkeypatch.setattr(runner, "purge_expired_forever", forever)
    old = _email("cancelled", datetime.now(UTC) - timedelta(days=8))
    kept = _email("scheduled", datetime.now(UTC) - timedelta(days=8))
    await insert_emails(sessions, old, kept)

    with capture_logs() as logs:
        async with running_worker(settings_factory(retention_days=7), smtp_server):
            await eventually(
                lambda: _present(sessions), lambda left: old.id not in left, what="the purge"
            )
    assert (await _present(sessions)).get(kept.id) == "scheduled"
    assert [e["cancelled"] for e in logs if e["event"] == "retention.purged"] == [1]
