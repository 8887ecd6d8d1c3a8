"""The delivery step against real PostgreSQL and Redis, with the in-memory transport."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.emails import accepting, delivery, log_repository
from mailroom.emails.intake import Intake
from mailroom.emails.models import Email
from mailroom.emails.schemas.requests import SendEmailRequest
from mailroom.projects.models import DEFAULT_PROJECT_ID
from mailroom.queue.dispatcher import Dispatcher
from mailroom.queue.jobs import DeliveryJob
from mailroom.settings import Settings
from mailroom.transport.base import Outcome, RecipientRefusal, SendResult
from mailroom.transport.memory import MemoryTransport, connection_lost, reply
from mailroom.unit_of_work import unit_of_work
from mailroom.worker.delivery import Deliverer
from mailroom.worker.sweeper import Sweeper

pytestmark = pytest.mark.usefixtures("clean")


async def _accept(
    sessions: async_sessionmaker[AsyncSession], dispatcher: Dispatcher, settings: Settings
) -> uuid.UUID:
    request = SendEmailRequest.model_validate(
        {"to": ["jane@example.com", "Carl <carl@example.com>"], "subject": "Hi", "text": "Hello"}
    )
    async with unit_of_work(sessions, dispatcher.dispatch) as uow:
        email = await accepting.accept_email(
            uow, request, settings=settings, request_id="req-1", project_id=DEFAULT_PROJECT_ID
        )
    return email.id


async def _load(sessions: async_sessionmaker[AsyncSession], email_id: uuid.UUID) -> Email:
    async with sessions() as session:
        found = await log_repository.get_email(
            session, email_id, project_id=None, with_attempts=True
        )
    assert found is not None
    return found.email


async def _make_due(sessions: async_sessionmaker[AsyncSession], email_id: uuid.UUID) -> None:
    async with sessions() as session:
        await session.execute(
            update(Email).where(Email.id == email_id).values(next_attempt_at=Email.created_at)
        )
        await session.commit()


async def test_accepted_then_delivered_and_a_duplicate_job_is_a_no_op(
    sessions: async_sessionmaker[AsyncSession],
    dispatcher: Dispatcher,
    settings: Settings,
    deliverer: Deliverer,
    transport: MemoryTransport,
) -> None:
    email_id = await _accept(sessions, dispatcher, settings)
    job = await dispatcher.queue.getJob(f"{email_id}-1")
    assert job is not None
    assert job.data == {"emailId": str(email_id), "attempt": 1, "requestId": "req-1"}

    assert await deliverer.deliver(DeliveryJob(email_id, attempt=1)) == "sent"
    assert await deliverer.deliver(DeliveryJob(email_id, attempt=1)) == "skipped"

    email = await _load(sessions, email_id)
    assert email.status == "sent"
    assert email.attempts == 1
    assert email.sent_at is not None
    assert email.lease_expires_at is None
    assert [a.outcome for a in email.delivery_attempts] == ["accepted"]
    [envelope] = transport.delivered
    assert envelope.recipients == ("jane@example.com", "carl@example.com")
    assert email.message_id.encode() in envelope.message


async def test_transient_failure_schedules_a_retry_that_cannot_run_early(
    sessions: async_sessionmaker[AsyncSession],
    dispatcher: Dispatcher,
    settings: Settings,
    deliverer: Deliverer,
    transport: MemoryTransport,
) -> None:
    email_id = await _accept(sessions, dispatcher, settings)
    transport.script(reply(451, "4.7.1 Greylisted, try again in 1 seconds"))

    assert await deliverer.deliver(DeliveryJob(email_id, attempt=1)) == "retrying"
    email = await _load(sessions, email_id)
    assert email.status == "retrying"
    assert email.next_attempt_at is not None
    assert (email.last_error_code, email.last_error_enhanced) == (451, "4.7.1")
    retry_job = await dispatcher.queue.getJob(f"{email_id}-2")
    assert retry_job is not None
    assert retry_job.opts["delay"] > 0

    # A stale duplicate arriving long before the retry is due does nothing.
    async with sessions() as session:
        await session.execute(
            update(Email)
            .where(Email.id == email_id)
            .values(next_attempt_at=Email.next_attempt_at + timedelta(minutes=10))
        )
        await session.commit()
    assert await deliverer.deliver(DeliveryJob(email_id, attempt=2)) == "skipped"

    await _make_due(sessions, email_id)
    assert await deliverer.deliver(DeliveryJob(email_id, attempt=2)) == "sent"
    email = await _load(sessions, email_id)
    assert [(a.attempt_number, a.outcome) for a in email.delivery_attempts] == [
        (1, "transient"),
        (2, "accepted"),
    ]
    assert email.last_error_code is None


async def test_permanent_failure_fails_at_once(
    sessions: async_sessionmaker[AsyncSession],
    dispatcher: Dispatcher,
    settings: Settings,
    deliverer: Deliverer,
    transport: MemoryTransport,
) -> None:
    email_id = await _accept(sessions, dispatcher, settings)
    transport.script(reply(554, "5.7.1 Message rejected as spam"))

    assert await deliverer.deliver(DeliveryJob(email_id, attempt=1)) == "failed"
    email = await _load(sessions, email_id)
    assert email.status == "failed"
    assert email.failed_at is not None
    assert email.sent_at is None
    assert (email.last_error_code, email.last_error_enhanced) == (554, "5.7.1")
    assert email.last_error_message == "Message rejected as spam"
    assert await dispatcher.queue.getJob(f"{email_id}-2") is None


async def test_attempts_run_out_into_failed_with_the_last_error(
    sessions: async_sessionmaker[AsyncSession],
    dispatcher: Dispatcher,
    settings_factory: Callable[..., Settings],
    transport: MemoryTransport,
) -> None:
    settings = settings_factory(max_attempts=2)
    deliverer = Deliverer(
        sessions=sessions, dispatcher=dispatcher, transport=transport, settings=settings
    )
    email_id = await _accept(sessions, dispatcher, settings)
    transport.script(connection_lost(), reply(421, "4.4.2 Service shutting down"))

    assert await deliverer.deliver(DeliveryJob(email_id, attempt=1)) == "retrying"
    await _make_due(sessions, email_id)
    assert await deliverer.deliver(DeliveryJob(email_id, attempt=2)) == "failed"

    email = await _load(sessions, email_id)
    assert email.attempts == 2
    assert (email.last_error_code, email.last_error_message) == (421, "Service shutting down")
    first, second = email.delivery_attempts
    assert (first.outcome, first.smtp_code, first.message) == (
        "transient",
        None,
        "Connection refused",
    )
    assert (second.outcome, second.smtp_code) == ("transient", 421)


async def test_a_partly_refused_email_is_sent_and_the_refusal_recorded(
    sessions: async_sessionmaker[AsyncSession],
    dispatcher: Dispatcher,
    settings: Settings,
    deliverer: Deliverer,
    transport: MemoryTransport,
) -> None:
    email_id = await _accept(sessions, dispatcher, settings)
    refusal = RecipientRefusal("carl@example.com", 550, "5.1.1", "No such user")
    transport.script(
        SendResult(Outcome.ACCEPTED, 250, "OK", enhanced_code="2.0.0", refused=(refusal,))
    )

    assert await deliverer.deliver(DeliveryJob(email_id, attempt=1)) == "sent"
    email = await _load(sessions, email_id)
    assert email.status == "sent"
    assert email.last_error_code == 550
    assert email.last_error_message == "Refused carl@example.com: No such user"
    [attempt] = email.delivery_attempts
    assert attempt.refused_recipients == [
        {
            "recipient": "carl@example.com",
            "code": 550,
            "enhancedCode": "5.1.1",
            "message": "No such user",
        }
    ]


async def test_an_abandoned_claim_is_taken_over_and_the_lost_attempt_recorded(
    sessions: async_sessionmaker[AsyncSession],
    dispatcher: Dispatcher,
    settings: Settings,
    deliverer: Deliverer,
) -> None:
    email_id = await _accept(sessions, dispatcher, settings)
    # A worker claims the email and dies before it records anything.
    async with unit_of_work(sessions, dispatcher.dispatch) as uow:
        [claimed] = await delivery.claim_for_delivery(uow, [email_id], settings=settings)
    assert claimed.attempt == 1

    # While its lease holds, nobody else may take it.
    assert await deliverer.deliver(DeliveryJob(email_id, attempt=2)) == "skipped"

    async with sessions() as session:
        await session.execute(
            update(Email)
            .where(Email.id == email_id)
            .values(lease_expires_at=Email.lease_expires_at - timedelta(hours=1))
        )
        await session.commit()
    assert await deliverer.deliver(DeliveryJob(email_id, attempt=2)) == "sent"

    email = await _load(sessions, email_id)
    assert email.status == "sent"
    assert email.attempts == 2
    assert [(a.attempt_number, a.outcome) for a in email.delivery_attempts] == [
        (1, "interrupted"),
        (2, "accepted"),
    ]


async def test_the_sweeper_redispatches_what_redis_lost(
    sessions: async_sessionmaker[AsyncSession],
    dispatcher: Dispatcher,
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(sweep_grace=0)
    email_id = await _accept(sessions, dispatcher, settings)
    # Redis forgets everything.
    await dispatcher.queue.obliterate(force=True)
    assert await dispatcher.queue.getJob(f"{email_id}-1") is None

    sweeper = Sweeper(sessions=sessions, dispatcher=dispatcher, settings=settings)
    assert await sweeper.sweep_once() == 1
    job = await dispatcher.queue.getJob(f"{email_id}-1")
    assert job is not None
    assert job.data["emailId"] == str(email_id)
    # Sweeping again while the job is still queued finds nothing lost and adds nothing.
    assert await sweeper.sweep_once() == 0
    counts = await dispatcher.queue.getJobCounts("waiting", "delayed", "active")
    assert sum(counts.values()) == 1


async def test_the_sweeper_forgets_idempotency_keys_after_24_hours(
    sessions: async_sessionmaker[AsyncSession],
    dispatcher: Dispatcher,
    settings: Settings,
    api_key: str,
) -> None:
    from sqlalchemy import select, text

    from mailroom.auth.keys import hash_key
    from mailroom.auth.models import ApiKey
    from mailroom.emails.models import IdempotencyKey

    async with sessions() as session:
        key_id = (
            await session.execute(select(ApiKey.id).where(ApiKey.key_hash == hash_key(api_key)))
        ).scalar_one()
    request = SendEmailRequest.model_validate({"to": "a@example.com", "subject": "s", "text": "t"})
    intake = Intake(sessions, dispatcher.dispatch, batch_job_size=settings.batch_job_size)
    for name in ("old", "new"):
        await accepting.send_email(
            intake,
            request,
            settings=settings,
            request_id=None,
            api_key_id=key_id,
            project_id=DEFAULT_PROJECT_ID,
            idempotency_key=f"sweep-{name}",
        )
    async with sessions() as session:
        await session.execute(
            text(
                "UPDATE idempotency_keys SET created_at = now() - interval '25 hours' "
                "WHERE key = 'sweep-old'"
            )
        )
        await session.commit()

    await Sweeper(sessions=sessions, dispatcher=dispatcher, settings=settings).sweep_once()

    async with sessions() as session:
        left = await session.execute(
            select(IdempotencyKey.key).where(IdempotencyKey.key.like("sweep-%"))
        )
        assert sorted(left.scalars()) == ["sweep-new"]
