"""Operating on accepted emails (cancel, retry, requeue) against real PostgreSQL and Redis.

The routes' answers are in tests/api (test_schedule_cancel, test_retry_requeue); what a
worker then does with the emails is in tests/worker/test_operations.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.emails import accepting, delivery, log_repository, operations
from mailroom.emails.models import Email
from mailroom.emails.schemas.requests import RequeueRequest, SendEmailRequest
from mailroom.errors import Conflict, NotFound
from mailroom.projects.access import ProjectAccess
from mailroom.projects.models import DEFAULT_PROJECT_ID
from mailroom.queue.dispatcher import Dispatcher
from mailroom.queue.jobs import DeliveryJob, Job
from mailroom.settings import Settings
from mailroom.unit_of_work import unit_of_work
from tests.support.factories import email_in, insert_emails

pytestmark = pytest.mark.usefixtures("clean")


async def _accept(
    sessions: async_sessionmaker[AsyncSession], dispatcher: Dispatcher, settings: Settings
) -> Email:
    request = SendEmailRequest.model_validate(
        {"to": "jane@example.com", "subject": "Hi", "text": "Hello"}
    )
    async with unit_of_work(sessions, dispatcher.dispatch) as uow:
        return await accepting.accept_email(
            uow, request, settings=settings, request_id="req-ops", project_id=DEFAULT_PROJECT_ID
        )


async def _load(sessions: async_sessionmaker[AsyncSession], email_id: uuid.UUID) -> Email:
    async with sessions() as session:
        found = await log_repository.get_email(session, email_id, project_id=None)
    assert found is not None
    return found.email


async def test_an_email_being_sent_cannot_be_cancelled(
    sessions: async_sessionmaker[AsyncSession], dispatcher: Dispatcher, settings: Settings
) -> None:
    email = await _accept(sessions, dispatcher, settings)
    async with unit_of_work(sessions, dispatcher.dispatch) as uow:
        [claimed] = await delivery.claim_for_delivery(uow, [email.id], settings=settings)
    assert claimed.email.status == "sending"

    with pytest.raises(Conflict) as raised:
        async with unit_of_work(sessions, dispatcher.dispatch) as uow:
            await operations.cancel_email(uow, email.id, access=ProjectAccess.operator())
    assert raised.value.details == {"status": "sending"}
    assert (await _load(sessions, email.id)).status == "sending"


async def test_a_refused_operation_names_the_statuses_that_allow_it(
    sessions: async_sessionmaker[AsyncSession], dispatcher: Dispatcher, settings: Settings
) -> None:
    email = await _accept(sessions, dispatcher, settings)
    with pytest.raises(Conflict) as raised:
        async with unit_of_work(sessions, dispatcher.dispatch) as uow:
            await operations.retry_email(uow, email.id, access=ProjectAccess.operator())
    assert raised.value.message == "This email is queued; only failed emails can be retried."
    with pytest.raises(NotFound):
        async with unit_of_work(sessions, dispatcher.dispatch) as uow:
            await operations.cancel_email(uow, uuid.uuid4(), access=ProjectAccess.operator())


async def test_a_requeue_commits_and_dispatches_one_batch_at_a_time(
    sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(operations, "REQUEUE_BATCH", 2)
    failed = [email_in("failed", request_id=f"req-{n}") for n in range(5)]
    await insert_emails(sessions, *failed, email_in("sent"))
    dispatches: list[list[Job]] = []

    async def dispatch(jobs: Sequence[Job]) -> bool:
        # Each batch's jobs go out once it has committed: its emails are queued by now.
        async with sessions() as session:
            for job in jobs:
                assert isinstance(job, DeliveryJob)
                stored = await log_repository.get_email(session, job.email_id, project_id=None)
                assert stored is not None and stored.email.status == "queued"
        dispatches.append(list(jobs))
        return True

    result = await operations.requeue_failed(
        sessions, dispatch, RequeueRequest(), access=ProjectAccess.operator()
    )
    assert (result.matched, result.requeued, result.has_more) == (5, 5, False)
    assert [len(jobs) for jobs in dispatches] == [2, 2, 1]
    jobs = [job for batch in dispatches for job in batch if isinstance(job, DeliveryJob)]
    assert sorted((j.email_id, j.attempt, j.request_id) for j in jobs) == sorted(
        (e.id, 2, e.request_id) for e in failed
    )
