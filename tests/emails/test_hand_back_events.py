"""A claim handed back unsent (a provider's pacing) emits no event; a deferral does.

The status triggers write an event per status change; a hand-back returns ``sending`` to
the status the email had, which its receivers were already told about, so a worker that
hands the same email back many times must not repeat ``email.queued`` or ``email.retrying``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.emails import delivery_repository, release_repository
from mailroom.emails.delivery_repository import AttemptRecord, Finished, LastError
from mailroom.emails.states import DEFER
from tests.support.factories import email_in, insert_emails, stored_emails

pytestmark = pytest.mark.usefixtures("clean")


async def _events(sessions: async_sessionmaker[AsyncSession], email_id: uuid.UUID) -> list[str]:
    async with sessions() as session:
        rows = await session.execute(
            text("SELECT type FROM email_events WHERE email_id = :id ORDER BY seq"),
            {"id": email_id},
        )
    return [row[0] for row in rows]


async def _hand_back(
    sessions: async_sessionmaker[AsyncSession], email_id: uuid.UUID, attempt: int
) -> None:
    later = datetime.now(UTC) + timedelta(seconds=5)
    async with sessions() as session:
        owned = await release_repository.release(
            session, [release_repository.Release(email_id, attempt, later)]
        )
        await session.commit()
    assert owned == {email_id}


@pytest.mark.parametrize(
    ("attempts", "back_to"), [(1, "queued"), (3, "retrying")], ids=["first", "retry"]
)
async def test_a_hand_back_emits_no_event(
    sessions: async_sessionmaker[AsyncSession], attempts: int, back_to: str
) -> None:
    email = email_in("sending", attempts=attempts)
    await insert_emails(sessions, email)
    for _ in range(3):  # claimed and handed back again, as a paced worker does
        await _hand_back(sessions, email.id, attempts)
        async with sessions() as session:
            await session.execute(
                text("UPDATE emails SET status = 'sending', attempts = :n WHERE id = :id"),
                {"n": attempts, "id": email.id},
            )
            await session.commit()
    await _hand_back(sessions, email.id, attempts)
    stored = (await stored_emails(sessions, [email.id]))[email.id]
    assert (stored.status, stored.attempts) == (back_to, attempts - 1)
    assert await _events(sessions, email.id) == []


async def test_a_temporary_failure_still_emits_email_retrying(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    email = email_in("sending")
    await insert_emails(sessions, email)
    now = datetime.now(UTC)
    async with sessions() as session:
        owned = await delivery_repository.finish_attempts(
            session,
            [
                Finished(
                    email_id=email.id,
                    transition=DEFER,
                    attempt=AttemptRecord(1, now, now, "transient", 451, "4.3.0", "Later", None),
                    error=LastError(451, "4.3.0", "Later"),
                    next_attempt_at=now + timedelta(seconds=30),
                )
            ],
        )
        await session.commit()
    assert owned == {email.id}
    assert await _events(sessions, email.id) == ["email.retrying"]
