"""Accepting emails (POST /send and /send/batch) against real PostgreSQL, jobs kept in a list.

What the routes add (status codes, headers, the rate limit) is in tests/api; here the use
cases themselves: what is stored, what is dispatched after the commit, what is refused.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.emails import accepting
from mailroom.emails.intake import Intake
from mailroom.emails.schemas.requests import SendEmailRequest
from mailroom.errors import IdempotencyKeyReused, InvalidRequest, PayloadTooLarge
from mailroom.projects.models import DEFAULT_PROJECT_ID
from mailroom.queue.jobs import DeliveryBatch, DeliveryJob
from mailroom.settings import Settings
from mailroom.unit_of_work import unit_of_work
from tests.support import factories
from tests.support.factories import batch_items, stored_emails
from tests.support.jobs import KeptJobs

pytestmark = pytest.mark.usefixtures("clean")


@pytest.fixture
async def key_id(sessions: async_sessionmaker[AsyncSession], api_key: str) -> uuid.UUID:
    return await factories.key_id(sessions, api_key)


async def _send_batch(
    sessions: async_sessionmaker[AsyncSession],
    dispatched: KeptJobs,
    settings: Settings,
    key_id: uuid.UUID,
    items: Sequence[object],
) -> accepting.BatchAcceptance:
    async with unit_of_work(sessions, dispatched) as uow:
        return await accepting.send_batch(
            uow,
            items,
            settings=settings,
            request_id="req-batch",
            api_key_id=key_id,
            project_id=DEFAULT_PROJECT_ID,
            idempotency_key=None,
        )


async def test_a_batch_stores_its_valid_emails_and_dispatches_them_in_batch_jobs(
    sessions: async_sessionmaker[AsyncSession],
    settings_factory: Callable[..., Settings],
    key_id: uuid.UUID,
) -> None:
    settings = settings_factory(batch_job_size=2)
    send_at = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    items: list[object] = [*batch_items(4), {"to": "not an address"}]
    items.insert(2, {**batch_items(1, prefix="later")[0], "sendAt": send_at})
    dispatched = KeptJobs()
    acceptance = await _send_batch(sessions, dispatched, settings, key_id, items)

    response = acceptance.response
    assert (response.accepted, response.rejected, acceptance.replayed) == (5, 1, False)
    assert [r.index for r in response.data] == list(range(6))
    rejected = response.data[5]
    assert rejected.id is None and rejected.error is not None
    assert rejected.error.code == "validation_error"
    assert all(f.field.startswith("emails[5].") for f in rejected.error.details)
    ids = [r.id for r in response.data if r.id is not None]
    later, due = ids[2], [*ids[:2], *ids[3:]]
    # The scheduled email keeps its delayed job; the others share jobs of BATCH_JOB_SIZE.
    first, *batches = dispatched.jobs
    assert isinstance(first, DeliveryJob) and first.email_id == later and first.delay > 0
    assert [b.email_ids for b in batches if isinstance(b, DeliveryBatch)] == [
        tuple(due[:2]),
        tuple(due[2:]),
    ]
    assert {b.request_id for b in batches if isinstance(b, DeliveryBatch)} == {"req-batch"}
    stored = await stored_emails(sessions)
    assert set(stored) == {later, *due}
    assert stored[later].batch_job_id is None and stored[later].status == "scheduled"
    assert {stored[i].batch_job_id for i in due[:2]} == {batches[0].job_id}
    assert {stored[i].batch_job_id for i in due[2:]} == {batches[1].job_id}


async def test_a_batch_with_no_valid_email_stores_nothing_and_names_every_problem(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    key_id: uuid.UUID,
) -> None:
    dispatched = KeptJobs()
    items = [{"to": "jane@example.com"}, {"subject": "s", "text": "t"}]
    with pytest.raises(InvalidRequest) as raised:
        await _send_batch(sessions, dispatched, settings, key_id, items)
    fields = [d["field"] for d in raised.value.details]
    assert "emails[0].subject" in fields and "emails[1].to" in fields
    assert raised.value.message.startswith("No email in the batch is valid; nothing was stored.")
    assert await stored_emails(sessions) == {}
    assert dispatched.jobs == []


async def test_attachments_too_large_are_refused_before_anything_is_stored(
    sessions: async_sessionmaker[AsyncSession],
    settings_factory: Callable[..., Settings],
    key_id: uuid.UUID,
) -> None:
    settings = settings_factory(max_attachment_bytes=1024)
    dispatched = KeptJobs()
    intake = Intake(sessions, dispatched, batch_job_size=settings.batch_job_size)
    content = base64.b64encode(b"x" * 2000).decode()
    request = SendEmailRequest.model_validate(
        {
            "to": "jane@example.com",
            "subject": "s",
            "text": "t",
            "attachments": [{"filename": "big.bin", "content": content}],
        }
    )
    with pytest.raises(PayloadTooLarge) as raised:
        await accepting.send_email(
            intake,
            request,
            settings=settings,
            request_id=None,
            api_key_id=key_id,
            project_id=DEFAULT_PROJECT_ID,
            idempotency_key=None,
        )
    assert [d["field"] for d in raised.value.details] == ["attachments[0].content"]
    assert await stored_emails(sessions) == {}
    assert dispatched.jobs == []


async def test_an_idempotency_key_replays_the_first_answer_and_refuses_another_body(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, key_id: uuid.UUID
) -> None:
    dispatched = KeptJobs()
    intake = Intake(sessions, dispatched, batch_job_size=settings.batch_job_size)

    async def send(body: dict[str, object], *, sandbox: bool = False) -> accepting.Acceptance:
        return await accepting.send_email(
            intake,
            SendEmailRequest.model_validate(body),
            settings=settings,
            request_id=None,
            api_key_id=key_id,
            project_id=DEFAULT_PROJECT_ID,
            idempotency_key="order-1",
            sandbox=sandbox,
        )

    body: dict[str, object] = {"to": "jane@example.com", "subject": "s", "text": "t"}
    first = await send(body)
    again = await send({**body, "to": ["jane@example.com"]})  # the same request, written so
    assert (first.replayed, again.replayed) == (False, True)
    assert again.response == first.response
    assert [j.email_id for j in dispatched.jobs if isinstance(j, DeliveryJob)] == [
        first.response.id
    ]
    for changed in ({**body, "subject": "other"}, body):
        with pytest.raises(IdempotencyKeyReused):
            await send(changed, sandbox=changed is body)  # a sandbox try is another request
    assert list(await stored_emails(sessions)) == [first.response.id]
