"""Writers of several emails lock them in id order, so overlapping ones cannot deadlock.

A claim locks its rows in id order, and keeps the lock on a row it then skips (taken by
another worker meanwhile) until it commits. Recording a batch must therefore never hold
a higher id while it waits on a lower one: the claim could hold the lower one and wait on
the higher, a cycle PostgreSQL breaks by failing one of them (seen in CI).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.emails import delivery_repository
from mailroom.emails.delivery_repository import AttemptRecord, Finished
from mailroom.emails.states import DELIVER
from tests.support.factories import email_in, insert_emails, stored_emails
from tests.support.waiting import eventually

pytestmark = pytest.mark.usefixtures("clean")


async def _two_sending(
    sessions: async_sessionmaker[AsyncSession], *, lease: timedelta
) -> tuple[uuid.UUID, uuid.UUID]:
    """Two emails on their first attempt, the higher id stored first (so a table scan
    or the order of the ids given would both reach it first)."""
    low, high = sorted([uuid.uuid4(), uuid.uuid4()])
    until = datetime.now(UTC) + lease
    await insert_emails(sessions, email_in("sending", id=high, lease_expires_at=until))
    await insert_emails(sessions, email_in("sending", id=low, lease_expires_at=until))
    return low, high


def _delivered(email_id: uuid.UUID) -> Finished:
    now = datetime.now(UTC)
    return Finished(
        email_id=email_id,
        transition=DELIVER,
        attempt=AttemptRecord(1, now, now, "accepted", 250, "2.0.0", "OK", None),
        error=None,
    )


async def _backend_pid(session: AsyncSession) -> int:
    pid: int = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    return pid


async def _waiting(sessions: async_sessionmaker[AsyncSession], pid: int) -> bool:
    async with sessions() as session:
        stmt = text("SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = :pid AND NOT granted)")
        waiting: bool = (await session.execute(stmt, {"pid": pid})).scalar_one()
    return waiting


async def _lockable_now(sessions: async_sessionmaker[AsyncSession], email_id: uuid.UUID) -> bool:
    async with sessions() as session:
        try:
            await session.execute(
                text("SELECT 1 FROM emails WHERE id = :id FOR NO KEY UPDATE NOWAIT"),
                {"id": email_id},
            )
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) != "55P03":  # lock_not_available
                raise
            return False
        finally:
            await session.rollback()
    return True


@pytest.fixture
async def holder(
    sessions: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """A session whose open transaction holds row locks until the test ends it."""
    async with sessions() as session:
        yield session
        await session.rollback()


async def _hold(session: AsyncSession, email_id: uuid.UUID) -> None:
    await session.execute(
        text("SELECT 1 FROM emails WHERE id = :id FOR NO KEY UPDATE"), {"id": email_id}
    )


async def _release(holder: AsyncSession, *waiters: asyncio.Future[Any]) -> None:
    """End the holder's transaction and give what waited on it time to finish (or fail)."""
    await holder.rollback()
    await asyncio.wait(waiters, timeout=10)
    assert all(w.done() for w in waiters), "still waiting 10 s after the lock was released"


async def test_recording_waits_for_the_lowest_id_before_locking_a_higher_one(
    sessions: async_sessionmaker[AsyncSession], holder: AsyncSession
) -> None:
    low, high = await _two_sending(sessions, lease=timedelta(seconds=30))
    await _hold(holder, low)

    async with sessions() as session:
        pid = await _backend_pid(session)
        recording = asyncio.ensure_future(
            delivery_repository.finish_attempts(session, [_delivered(high), _delivered(low)])
        )
        try:
            await eventually(lambda: _waiting(sessions, pid), bool, what="the record to wait")
            # Blocked on the low id, it has not taken the high one.
            assert await _lockable_now(sessions, high), "the record holds the higher id"
        finally:
            await _release(holder, recording)
        owned = recording.result()
        await session.commit()
    assert owned == {low, high}
    emails = await stored_emails(sessions, [low, high])
    assert {e.status for e in emails.values()} == {"sent"}


async def test_a_claim_and_a_record_of_the_same_emails_both_finish(
    sessions: async_sessionmaker[AsyncSession], holder: AsyncSession
) -> None:
    # The leases have run out: another worker takes the emails over while their first
    # worker records its attempts. The claim queues for the lower id first, then the
    # record does; PostgreSQL hands the row to them in that order. Before the ordered
    # record, the record held the higher id by then and the two deadlocked.
    low, high = await _two_sending(sessions, lease=timedelta(seconds=-1))
    await _hold(holder, low)

    async with sessions() as claiming, sessions() as recording:

        async def claim() -> list[delivery_repository.Claimed]:
            claimed = await delivery_repository.claim(
                claiming, [low, high], timedelta(seconds=30), takeover=timedelta(seconds=10)
            )
            await claiming.commit()
            return claimed

        async def record() -> set[uuid.UUID]:
            owned = await delivery_repository.finish_attempts(
                recording, [_delivered(high), _delivered(low)]
            )
            await recording.commit()
            return owned

        claimer, recorder = await _backend_pid(claiming), await _backend_pid(recording)
        tasks: list[asyncio.Future[Any]] = [asyncio.ensure_future(claim())]
        try:
            await eventually(lambda: _waiting(sessions, claimer), bool, what="the claim to wait")
            tasks.append(asyncio.ensure_future(record()))
            await eventually(lambda: _waiting(sessions, recorder), bool, what="the record to wait")
        finally:
            await _release(holder, *tasks)
        claimed, owned = (t.result() for t in tasks)

    # The claim went first: the emails belong to the new worker, the first attempts are
    # logged as interrupted, and the late record changed nothing.
    assert {c.email.id for c in claimed} == {low, high}
    assert owned == set()
    emails = await stored_emails(sessions, [low, high])
    assert {e.status for e in emails.values()} == {"sending"}
    for email in emails.values():
        assert [a.outcome for a in email.delivery_attempts] == ["interrupted"]
