"""Group commit: concurrent emails share a transaction, and a failed group stores nothing."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.emails import new_emails
from mailroom.emails.intake import MAX_GROUP, Intake
from mailroom.emails.schemas.requests import SendEmailRequest
from mailroom.projects.models import DEFAULT_PROJECT_ID
from mailroom.queue.jobs import DeliveryBatch, DeliveryJob
from mailroom.settings import Settings
from tests.support.jobs import KeptJobs

pytestmark = pytest.mark.usefixtures("clean")
BATCH = 10


def _row(settings: Settings, n: int) -> tuple[dict[str, object], DeliveryJob]:
    request = SendEmailRequest.model_validate(
        {"to": f"user{n}@example.com", "subject": "s", "text": "t"}
    )
    now = datetime.now(UTC)
    email = new_emails.new_email(request, settings, None, None, now, project_id=DEFAULT_PROJECT_ID)
    return new_emails.columns(email), new_emails.first_job(email, now)


async def _transactions(sessions: async_sessionmaker[AsyncSession]) -> tuple[int, int]:
    async with sessions() as session:
        rows, xids = (
            await session.execute(text("SELECT count(*), count(DISTINCT xmin::text) FROM emails"))
        ).one()
    return int(rows), int(xids)


async def test_emails_stored_together_share_one_transaction_and_batch_jobs(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    dispatched = KeptJobs()
    intake = Intake(sessions, dispatched, batch_job_size=BATCH)
    items = [_row(settings, n) for n in range(25)]
    await asyncio.gather(*(intake.store(row, job) for row, job in items))
    assert await _transactions(sessions) == (25, 1)
    [jobs] = dispatched.calls
    assert all(isinstance(j, DeliveryBatch) for j in jobs)
    batches = [j for j in jobs if isinstance(j, DeliveryBatch)]
    assert [len(b.email_ids) for b in batches] == [10, 10, 5]
    assert [i for b in batches for i in b.email_ids] == [job.email_id for _, job in items]
    # Each email knows its batch job, so the sweeper asks Redis for the right one.
    async with sessions() as session:
        result = await session.execute(text("SELECT id, batch_job_id FROM emails"))
        stored: dict[uuid.UUID, str] = {row.id: row.batch_job_id for row in result}
    assert stored == {i: b.job_id for b in batches for i in b.email_ids}


async def test_a_scheduled_email_keeps_its_delayed_job(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    dispatched = KeptJobs()
    intake = Intake(sessions, dispatched, batch_job_size=BATCH)
    row, job = _row(settings, 1)
    later = replace(job, delay=60.0)
    now_row, now_job = _row(settings, 2)
    await asyncio.gather(intake.store(row, later), intake.store(now_row, now_job))
    [jobs] = dispatched.calls
    assert later in jobs
    assert [j.email_ids for j in jobs if isinstance(j, DeliveryBatch)] == [(now_job.email_id,)]


async def test_a_group_is_at_most_max_group_emails(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    dispatched = KeptJobs()
    intake = Intake(sessions, dispatched, batch_job_size=BATCH)
    items = [_row(settings, n) for n in range(MAX_GROUP + 5)]
    await asyncio.gather(*(intake.store(row, job) for row, job in items))
    assert await _transactions(sessions) == (MAX_GROUP + 5, 2)


async def test_a_failed_group_fails_every_caller_and_stores_nothing(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    dispatched = KeptJobs()
    intake = Intake(sessions, dispatched, batch_job_size=BATCH)
    items = [_row(settings, n) for n in range(3)]
    duplicate = (dict(items[0][0]), items[0][1])  # the same primary key twice
    outcomes = await asyncio.gather(
        *(intake.store(row, job) for row, job in [*items, duplicate]), return_exceptions=True
    )
    assert all(isinstance(o, IntegrityError) for o in outcomes), outcomes
    assert await _transactions(sessions) == (0, 0)
    assert dispatched.calls == []
    # The next group is not affected.
    row, job = _row(settings, 99)
    await intake.store(row, job)
    assert (await _transactions(sessions))[0] == 1
