"""The worker's side of scheduling, cancelling, retrying and sandboxing.

The delivery step (Deliverer) and the sweeper run against real PostgreSQL and Redis
with the in-memory transport; the "cancelled is never delivered" check runs a real
worker against the in-process SMTP server.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.emails import accepting, log_repository, operations
from mailroom.emails.models import Email
from mailroom.emails.schemas.requests import SendEmailRequest
from mailroom.projects.access import ProjectAccess
from mailroom.projects.models import DEFAULT_PROJECT_ID
from mailroom.queue.dispatcher import Dispatcher
from mailroom.queue.jobs import DeliveryBatch, DeliveryJob
from mailroom.settings import Settings
from mailroom.transport.base import Envelope, SendResult
from mailroom.transport.memory import MemoryTransport, connection_lost, reply
from mailroom.transport.sandbox import SANDBOX_REPLY
from mailroom.unit_of_work import unit_of_work
from mailroom.worker.delivery import Deliverer
from mailroom.worker.sweeper import Sweeper
from tests.conftest import running_worker
from tests.support.smtp_server import SmtpTestServer
from tests.support.waiting import eventually
from tests.worker.conftest import make_deliverer

pytestmark = pytest.mark.usefixtures("clean")


async def _accept(
    sessions: async_sessionmaker[AsyncSession],
    dispatcher: Dispatcher,
    settings: Settings,
    *,
    sandbox: bool = False,
    **fields: Any,
) -> Email:
    request = SendEmailRequest.model_validate(
        {"to": "jane@example.com", "subject": "Hi", "text": "Hello", **fields}
    )
    async with unit_of_work(sessions, dispatcher.dispatch) as uow:
        return await accepting.accept_email(
            uow,
            request,
            settings=settings,
            request_id="req-ops",
            project_id=DEFAULT_PROJECT_ID,
            sandbox=sandbox,
        )


async def _load(sessions: async_sessionmaker[AsyncSession], email_id: uuid.UUID) -> Email:
    async with sessions() as session:
        found = await log_repository.get_email(
            session, email_id, project_id=None, with_attempts=True
        )
    assert found is not None
    return found.email


async def _set(
    sessions: async_sessionmaker[AsyncSession], email_id: uuid.UUID, **values: Any
) -> None:
    from tests.support.factories import update_email

    await update_email(sessions, email_id, **values)


def _attempts(email: Email) -> list[tuple[int, str]]:
    return [(a.attempt_number, a.outcome) for a in email.delivery_attempts]


# -- scheduled ---------------------------------------------------------------------------


async def test_a_scheduled_email_is_not_claimed_before_it_is_due_and_is_once_due(
    sessions: async_sessionmaker[AsyncSession],
    dispatcher: Dispatcher,
    settings: Settings,
    deliverer: Deliverer,
    transport: MemoryTransport,
) -> None:
    send_at = datetime.now(UTC) + timedelta(hours=1)
    email = await _accept(sessions, dispatcher, settings, sendAt=send_at.isoformat())
    assert email.status == "scheduled"

    # A job that fires early (a duplicate, a sweeper's, a clock skew) claims nothing.
    assert await deliverer.deliver(DeliveryJob(email.id, attempt=1)) == "skipped"
    stored = await _load(sessions, email.id)
    assert (stored.status, stored.attempts, stored.next_attempt_at) == ("scheduled", 0, send_at)
    assert transport.attempts == []

    # Still 10 s ahead: more than BullMQ's rounding, so still not claimed.
    soon = datetime.now(UTC) + timedelta(seconds=10)
    await _set(sessions, email.id, send_at=soon, next_attempt_at=soon)
    assert await deliverer.deliver(DeliveryJob(email.id, attempt=1)) == "skipped"
    assert transport.attempts == []

    due = datetime.now(UTC) - timedelta(seconds=1)
    await _set(sessions, email.id, send_at=due, next_attempt_at=due)
    assert await deliverer.deliver(DeliveryJob(email.id, attempt=1)) == "sent"
    assert await deliverer.deliver(DeliveryJob(email.id, attempt=1)) == "skipped"

    stored = await _load(sessions, email.id)
    assert stored.status == "sent"
    assert stored.sent_at is not None and stored.attempts == 1
    assert stored.send_at == due  # the log keeps what was asked
    assert _attempts(stored) == [(1, "accepted")]
    [envelope] = transport.delivered
    assert email.message_id.encode() in envelope.message


class ClockedTransport:
    """Accepts every message and notes when each one was handed over."""

    def __init__(self) -> None:
        self.sent_at: list[datetime] = []

    async def send(self, envelope: Envelope) -> SendResult:
        self.sent_at.append(datetime.now(UTC))
        return reply(250, "2.0.0 OK")

    async def aclose(self) -> None:
        return None


async def test_a_scheduled_email_claimed_early_is_not_sent_before_its_send_at(
    sessions: async_sessionmaker[AsyncSession],
    dispatcher: Dispatcher,
    settings: Settings,
) -> None:
    # Within the claim's slack: a job firing now may claim it, but the send must wait.
    send_at = datetime.now(UTC) + timedelta(seconds=1)
    email = await _accept(sessions, dispatcher, settings, sendAt=send_at.isoformat())
    clocked = ClockedTransport()
    deliverer = make_deliverer(sessions, dispatcher, settings, clocked)

    assert await deliverer.deliver(DeliveryJob(email.id, attempt=1)) == "sent"

    [handed_over] = clocked.sent_at
    assert handed_over >= send_at
    stored = await _load(sessions, email.id)
    assert stored.sent_at is not None and stored.sent_at >= send_at
    # The wait is not part of the attempt: it starts when the send does.
    [attempt] = stored.delivery_attempts
    assert attempt.started_at >= send_at


async def test_a_batch_job_skips_its_scheduled_email_and_sends_the_rest(
    sessions: async_sessionmaker[AsyncSession],
    dispatcher: Dispatcher,
    settings: Settings,
    deliverer: Deliverer,
    transport: MemoryTransport,
) -> None:
    later = await _accept(
        sessions, dispatcher, settings, sendAt=(datetime.now(UTC) + timedelta(hours=1)).isoformat()
    )
    now = await _accept(sessions, dispatcher, settings)

    result = await deliverer.deliver_batch(DeliveryBatch((later.id, now.id)))
    assert result == "sent=1 skipped=1"
    assert (await _load(sessions, later.id)).status == "scheduled"
    assert (await _load(sessions, now.id)).status == "sent"
    assert len(transport.attempts) == 1


async def test_the_sweeper_dispatches_an_overdue_scheduled_email_whose_job_redis_lost(
    sessions: async_sessionmaker[AsyncSession],
    dispatcher: Dispatcher,
    settings: Settings,
    deliverer: Deliverer,
) -> None:
    sweeper = Sweeper(sessions=sessions, dispatcher=dispatcher, settings=settings)
    send_at = datetime.now(UTC) + timedelta(hours=1)
    overdue = await _accept(sessions, dispatcher, settings, sendAt=send_at.isoformat())
    not_due = await _accept(sessions, dispatcher, settings, sendAt=send_at.isoformat())
    for email in (overdue, not_due):
        assert await dispatcher.queue.getJob(f"{email.id}-1") is not None
        await dispatcher.queue.remove(f"{email.id}-1")  # Redis lost them
        assert await dispatcher.queue.getJob(f"{email.id}-1") is None

    # Not due yet: nothing to re-dispatch, lost job or not.
    assert await sweeper.sweep_once() == 0

    # Its sendAt passed a minute ago (well beyond SWEEP_GRACE) with no job in Redis.
    past = datetime.now(UTC) - timedelta(minutes=1)
    await _set(sessions, overdue.id, send_at=past, next_attempt_at=past)
    assert await sweeper.sweep_once() == 1
    job = await dispatcher.queue.getJob(f"{overdue.id}-1")
    assert job is not None
    assert job.opts.get("delay", 0) == 0  # due: no further wait
    assert job.data["attempt"] == 1
    assert await dispatcher.queue.getJob(f"{not_due.id}-1") is None
    # Held now: the next pass re-dispatches nothing.
    assert await sweeper.sweep_once() == 0

    assert await deliverer.deliver(DeliveryJob.from_data(job.data)) == "sent"
    assert (await _load(sessions, not_due.id)).status == "scheduled"


async def test_the_sweeper_leaves_a_cancelled_email_alone(
    sessions: async_sessionmaker[AsyncSession], dispatcher: Dispatcher, settings: Settings
) -> None:
    sweeper = Sweeper(sessions=sessions, dispatcher=dispatcher, settings=settings)
    email = await _accept(sessions, dispatcher, settings)
    await dispatcher.queue.remove(f"{email.id}-1")
    async with unit_of_work(sessions, dispatcher.dispatch) as uow:
        await operations.cancel_email(uow, email.id, access=ProjectAccess.operator())
    # Even were it to look overdue, its status keeps it out of the sweep.
    await _set(sessions, email.id, next_attempt_at=datetime.now(UTC) - timedelta(hours=1))

    assert await sweeper.sweep_once() == 0
    assert await dispatcher.queue.getJob(f"{email.id}-1") is None


# -- cancelled ---------------------------------------------------------------------------


async def test_a_cancelled_queued_email_is_never_delivered_by_a_real_worker(
    client: httpx.AsyncClient, settings: Settings, smtp_server: SmtpTestServer
) -> None:
    body = {"to": "jane@example.com", "text": "Hi"}
    cancelled = (await client.post("/send", json={**body, "subject": "Cancelled"})).json()
    assert cancelled["status"] == "queued"
    response = await client.post(f"/emails/{cancelled['id']}/cancel")
    assert response.status_code == 200, response.text

    dispatcher = Dispatcher(settings)
    try:
        # Its job is still in Redis, waiting for a worker.
        assert await dispatcher.queue.getJob(f"batch-{cancelled['id']}-1") is not None
        async with running_worker(settings, smtp_server):
            after = (await client.post("/send", json={**body, "subject": "After"})).json()

            async def state() -> tuple[str, bool]:
                email = (await client.get(f"/emails/{after['id']}")).json()
                job = await dispatcher.queue.getJob(f"batch-{cancelled['id']}-1")
                return email["status"], job is None

            # The later email went out, and the cancelled one's job has been processed.
            await eventually(state, lambda s: s == ("sent", True), what="the queue drained")
    finally:
        await dispatcher.aclose()

    assert [m.parsed()["Subject"] for m in smtp_server.handler.messages()] == ["After"]
    detail = (await client.get(f"/emails/{cancelled['id']}")).json()
    assert detail["status"] == "cancelled"
    assert (detail["attempts"], detail["deliveryAttempts"], detail["sentAt"]) == (0, [], None)


async def test_a_cancelled_retrying_email_is_not_sent_by_its_retry_job(
    sessions: async_sessionmaker[AsyncSession],
    dispatcher: Dispatcher,
    settings: Settings,
    deliverer: Deliverer,
    transport: MemoryTransport,
) -> None:
    email = await _accept(sessions, dispatcher, settings)
    transport.script(reply(451, "4.3.0 Try again later"))
    assert await deliverer.deliver(DeliveryJob(email.id, attempt=1)) == "retrying"
    assert await dispatcher.queue.getJob(f"{email.id}-2") is not None

    async with unit_of_work(sessions, dispatcher.dispatch) as uow:
        item = await operations.cancel_email(uow, email.id, access=ProjectAccess.operator())
    assert item.status == "cancelled"

    assert await deliverer.deliver(DeliveryJob(email.id, attempt=2)) == "skipped"
    stored = await _load(sessions, email.id)
    assert stored.status == "cancelled" and stored.cancelled_at is not None
    assert stored.attempts == 1
    assert _attempts(stored) == [(1, "transient")]
    assert len(transport.attempts) == 1


async def test_cancelled_emails_are_skipped_by_their_batch_and_scheduled_jobs(
    sessions: async_sessionmaker[AsyncSession],
    dispatcher: Dispatcher,
    settings: Settings,
    deliverer: Deliverer,
    transport: MemoryTransport,
) -> None:
    kept = await _accept(sessions, dispatcher, settings, subject="Kept")
    dropped = await _accept(sessions, dispatcher, settings, subject="Dropped")
    later = await _accept(
        sessions, dispatcher, settings, sendAt=(datetime.now(UTC) + timedelta(hours=1)).isoformat()
    )
    for email in (dropped, later):
        async with unit_of_work(sessions, dispatcher.dispatch) as uow:
            await operations.cancel_email(uow, email.id, access=ProjectAccess.operator())
    # The scheduled one's time comes: its delayed job fires.
    await _set(sessions, later.id, send_at=datetime.now(UTC) - timedelta(seconds=1))

    assert await deliverer.deliver_batch(DeliveryBatch((dropped.id, kept.id))) == (
        "sent=1 skipped=1"
    )
    assert await deliverer.deliver(DeliveryJob(later.id, attempt=1)) == "skipped"
    [envelope] = transport.attempts
    assert b"Subject: Kept" in envelope.message
    for email in (dropped, later):
        stored = await _load(sessions, email.id)
        assert (stored.status, stored.attempts, stored.delivery_attempts) == ("cancelled", 0, [])


# -- retried -----------------------------------------------------------------------------


async def _retry(
    sessions: async_sessionmaker[AsyncSession], dispatcher: Dispatcher, email_id: uuid.UUID
) -> None:
    async with unit_of_work(sessions, dispatcher.dispatch) as uow:
        item = await operations.retry_email(uow, email_id, access=ProjectAccess.operator())
    assert item.status == "queued" and item.failed_at is None


async def test_a_retry_gets_a_fresh_budget_of_max_attempts(
    sessions: async_sessionmaker[AsyncSession],
    dispatcher: Dispatcher,
    settings_factory: Callable[..., Settings],
    transport: MemoryTransport,
) -> None:
    settings = settings_factory(max_attempts=2)
    deliverer = make_deliverer(sessions, dispatcher, settings, transport)
    email = await _accept(sessions, dispatcher, settings)
    transport.script(*(reply(451, "4.3.0 Try again later") for _ in range(4)))

    assert await deliverer.deliver(DeliveryJob(email.id, attempt=1)) == "retrying"
    assert await deliverer.deliver(DeliveryJob(email.id, attempt=2)) == "failed"
    stored = await _load(sessions, email.id)
    assert (stored.status, stored.attempts) == ("failed", 2)

    await _retry(sessions, dispatcher, email.id)
    stored = await _load(sessions, email.id)
    assert (stored.status, stored.attempts, stored.attempts_before_retry) == ("queued", 2, 2)
    assert stored.failed_at is None and stored.next_attempt_at is not None
    job = await dispatcher.queue.getJob(f"{email.id}-3")
    assert job is not None and job.data["attempt"] == 3

    # Two more attempts (3 and 4), not one: the budget counts from the retry.
    assert await deliverer.deliver(DeliveryJob(email.id, attempt=3)) == "retrying"
    assert await dispatcher.queue.getJob(f"{email.id}-4") is not None
    assert await deliverer.deliver(DeliveryJob(email.id, attempt=4)) == "failed"
    stored = await _load(sessions, email.id)
    assert (stored.status, stored.attempts) == ("failed", 4)
    assert stored.failed_at is not None and stored.last_error_code == 451
    assert _attempts(stored) == [(n, "transient") for n in (1, 2, 3, 4)]

    # And once more: attempt 5 goes out and is accepted.
    await _retry(sessions, dispatcher, email.id)
    assert await deliverer.deliver(DeliveryJob(email.id, attempt=5)) == "sent"
    stored = await _load(sessions, email.id)
    assert (stored.status, stored.attempts, stored.attempts_before_retry) == ("sent", 5, 4)
    assert stored.last_error_code is None and stored.failed_at is None
    assert _attempts(stored)[-1] == (5, "accepted")
    assert len({e.message for e in transport.attempts}) == 1  # the same bytes each time


async def test_a_retry_of_a_permanent_failure_is_sent_with_the_same_message_id(
    sessions: async_sessionmaker[AsyncSession],
    dispatcher: Dispatcher,
    settings: Settings,
    deliverer: Deliverer,
    transport: MemoryTransport,
) -> None:
    email = await _accept(sessions, dispatcher, settings)
    transport.script(reply(550, "5.1.1 No such user"))
    assert await deliverer.deliver(DeliveryJob(email.id, attempt=1)) == "failed"
    await _retry(sessions, dispatcher, email.id)
    assert await deliverer.deliver(DeliveryJob(email.id, attempt=2)) == "sent"

    stored = await _load(sessions, email.id)
    assert _attempts(stored) == [(1, "permanent"), (2, "accepted")]
    assert stored.message_id == email.message_id
    first, second = transport.attempts
    assert first.message == second.message
    assert email.message_id.encode() in second.message


async def test_a_connection_failure_exhausted_then_retried_and_sent(
    sessions: async_sessionmaker[AsyncSession],
    dispatcher: Dispatcher,
    settings_factory: Callable[..., Settings],
    transport: MemoryTransport,
) -> None:
    settings = settings_factory(max_attempts=1)
    deliverer = make_deliverer(sessions, dispatcher, settings, transport)
    email = await _accept(sessions, dispatcher, settings)
    transport.script(connection_lost())
    assert await deliverer.deliver(DeliveryJob(email.id, attempt=1)) == "failed"
    stored = await _load(sessions, email.id)
    assert stored.last_error_code is None and stored.last_error_message

    await _retry(sessions, dispatcher, email.id)
    assert await deliverer.deliver(DeliveryJob(email.id, attempt=2)) == "sent"


# -- sandbox -----------------------------------------------------------------------------


async def test_a_sandbox_email_goes_to_the_sandbox_transport_even_in_a_batch(
    sessions: async_sessionmaker[AsyncSession],
    dispatcher: Dispatcher,
    settings: Settings,
    deliverer: Deliverer,
    transport: MemoryTransport,
) -> None:
    sandboxed = await _accept(sessions, dispatcher, settings, sandbox=True, subject="Sandbox")
    real = await _accept(sessions, dispatcher, settings, subject="Real")

    assert await deliverer.deliver_batch(DeliveryBatch((sandboxed.id, real.id))) == "sent=2"
    [envelope] = transport.attempts
    assert b"Subject: Real" in envelope.message

    stored = await _load(sessions, sandboxed.id)
    assert (stored.status, stored.sandbox) == ("sent", True)
    [attempt] = stored.delivery_attempts
    assert (attempt.outcome, attempt.smtp_code, attempt.message) == ("accepted", 250, SANDBOX_REPLY)
    assert "sandbox" in (attempt.message or "").lower()
    assert (await _load(sessions, real.id)).sandbox is False


async def test_a_sandbox_email_may_use_a_given_sandbox_transport(
    sessions: async_sessionmaker[AsyncSession],
    dispatcher: Dispatcher,
    settings: Settings,
    transport: MemoryTransport,
) -> None:
    inbox = MemoryTransport()  # as `mailroom dev` passes its inbox
    deliverer = Deliverer(
        sessions=sessions,
        dispatcher=dispatcher,
        transport=transport,
        settings=settings,
        sandbox_transport=inbox,
    )
    email = await _accept(sessions, dispatcher, settings, sandbox=True)
    assert await deliverer.deliver(DeliveryJob(email.id, attempt=1)) == "sent"
    assert len(inbox.delivered) == 1
    assert transport.attempts == []
