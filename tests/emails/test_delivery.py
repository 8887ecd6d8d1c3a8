"""The delivery use cases the worker calls, against real PostgreSQL; jobs kept in a list.

The worker around them (coalescing, leases kept while sending, stops) is in tests/worker.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.emails import delivery
from mailroom.emails.delivery import AttemptResult, Claimed
from mailroom.emails.models import Email
from mailroom.queue.jobs import DeliveryJob
from mailroom.settings import Settings
from mailroom.transport.memory import reply
from mailroom.unit_of_work import unit_of_work
from mailroom.worker.sweeper import SWEEPER_LOCK
from tests.support.factories import email_in, insert_emails, stored_emails
from tests.support.jobs import KeptJobs

pytestmark = pytest.mark.usefixtures("clean")


async def _claim(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, *ids: uuid.UUID
) -> list[Claimed]:
    async with unit_of_work(sessions, KeptJobs()) as uow:
        return await delivery.claim_for_delivery(uow, ids, settings=settings)


async def _leases(sessions: async_sessionmaker[AsyncSession]) -> dict[uuid.UUID, datetime | None]:
    async with sessions() as session:
        rows = await session.execute(select(Email.id, Email.lease_expires_at))
        return {row.id: row.lease_expires_at for row in rows}


async def test_a_lease_is_renewed_only_for_the_attempt_still_held(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    held, moved_on, recorded = (uuid.uuid4() for _ in range(3))
    soon = datetime.now(UTC) + timedelta(seconds=5)
    await insert_emails(
        sessions,
        email_in("sending", id=held, attempts=1, lease_expires_at=soon),
        # Taken over by another worker: it holds attempt 2, not this worker's 1.
        email_in("sending", id=moved_on, attempts=2, lease_expires_at=soon),
        email_in("retrying", id=recorded, attempts=1, next_attempt_at=soon),
    )
    before = await _leases(sessions)
    async with sessions() as session:
        await delivery.renew_leases(
            session, [(held, 1), (moved_on, 1), (recorded, 1)], timedelta(minutes=10)
        )
        await session.commit()
    after = await _leases(sessions)
    renewed = after[held]
    assert renewed is not None and renewed > datetime.now(UTC) + timedelta(minutes=9)
    assert (after[moved_on], after[recorded]) == (before[moved_on], before[recorded])


async def test_a_deferral_is_recorded_and_its_next_attempt_dispatched_after_the_commit(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    email = email_in("queued")
    await insert_emails(sessions, email)
    [claimed] = await _claim(sessions, settings, email.id)
    now = datetime.now(UTC)
    dispatched = KeptJobs()
    attempt = AttemptResult(claimed, reply(451, "4.7.1 Try later"), now, now)
    async with unit_of_work(sessions, dispatched) as uow:
        [recorded] = await delivery.record_attempts(
            uow, [attempt], settings=settings, rng=random.Random(1)
        )
        assert dispatched.jobs == []  # not before the commit
    assert recorded.applied and recorded.decision.delay is not None
    [job] = dispatched.jobs
    assert job == DeliveryJob(email.id, 2, email.request_id, delay=recorded.decision.delay)
    stored = (await stored_emails(sessions))[email.id]
    assert (stored.status, stored.last_error_code, stored.lease_expires_at) == (
        "retrying",
        451,
        None,
    )
    assert [(a.attempt_number, a.outcome) for a in stored.delivery_attempts] == [(1, "transient")]


async def test_the_record_of_an_email_taken_over_is_not_applied(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    email = email_in("queued")
    await insert_emails(sessions, email)
    [claimed] = await _claim(sessions, settings, email.id)
    async with sessions() as session:  # the lease ran out and another worker took it over
        await session.execute(
            text("UPDATE emails SET lease_expires_at = now() - interval '1 second'")
        )
        await session.commit()
    [taken_over] = await _claim(sessions, settings, email.id)
    assert (taken_over.attempt, taken_over.reclaimed) == (2, True)

    now = datetime.now(UTC)
    dispatched = KeptJobs()
    async with unit_of_work(sessions, dispatched) as uow:
        [late] = await delivery.record_attempts(
            uow,
            [AttemptResult(claimed, reply(451, "4.7.1 Try later"), now, now)],
            settings=settings,
            rng=random.Random(1),
        )
    assert not late.applied
    assert dispatched.jobs == []
    stored = (await stored_emails(sessions))[email.id]
    assert (stored.status, stored.attempts) == ("sending", 2)
    # The interrupted record the takeover wrote stays; the late one is dropped.
    assert [(a.attempt_number, a.outcome) for a in stored.delivery_attempts] == [(1, "interrupted")]


async def test_one_sweeper_at_a_time(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    overdue = email_in("queued", next_attempt_at=datetime.now(UTC) - timedelta(hours=1))
    await insert_emails(sessions, overdue)
    async with sessions() as holder:
        await holder.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": SWEEPER_LOCK})
        async with unit_of_work(sessions, KeptJobs()) as uow:
            assert await delivery.sweep(uow, settings=settings, lock_key=SWEEPER_LOCK) == ()
        await holder.rollback()
    async with unit_of_work(sessions, KeptJobs()) as uow:
        jobs = await delivery.sweep(uow, settings=settings, lock_key=SWEEPER_LOCK)
    assert list(jobs) == [DeliveryJob(overdue.id, 1, overdue.request_id)]
