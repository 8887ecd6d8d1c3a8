"""A worker renews the leases of the emails it holds: a slow send is not taken over."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import datetime

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.emails import accepting
from mailroom.emails.models import Email
from mailroom.emails.schemas.requests import SendEmailRequest
from mailroom.projects.models import DEFAULT_PROJECT_ID
from mailroom.queue.dispatcher import Dispatcher
from mailroom.queue.jobs import DeliveryJob
from mailroom.settings import Settings
from mailroom.transport.base import Envelope, SendResult
from mailroom.transport.memory import MemoryTransport, reply
from mailroom.unit_of_work import unit_of_work
from tests.support.waiting import eventually
from tests.worker.conftest import make_deliverer

pytestmark = pytest.mark.usefixtures("clean")


class SlowTransport:
    """Holds every send until ``release`` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.sent: list[Envelope] = []

    async def send(self, envelope: Envelope) -> SendResult:
        await self.release.wait()
        self.sent.append(envelope)
        return reply(250, "2.0.0 OK")

    async def aclose(self) -> None:
        return None


async def _lease(
    sessions: async_sessionmaker[AsyncSession], email_id: uuid.UUID
) -> datetime | None:
    async with sessions() as session:
        stmt = select(Email.lease_expires_at).where(Email.id == email_id)
        value: datetime | None = (await session.execute(stmt)).scalar_one()
    return value


async def test_a_send_slower_than_the_lease_keeps_its_email(
    sessions: async_sessionmaker[AsyncSession],
    dispatcher: Dispatcher,
    settings_factory: Callable[..., Settings],
) -> None:
    # Renewed every second: a renewal that fails once (a busy machine, a pooled connection
    # the server closed) still leaves two seconds before anyone could take it over.
    settings = settings_factory(sending_lease=3.0)
    request = SendEmailRequest.model_validate(
        {"to": "jane@example.com", "subject": "Slow", "text": "Hi"}
    )
    async with unit_of_work(sessions, dispatcher.dispatch) as uow:
        email = await accepting.accept_email(
            uow, request, settings=settings, request_id=None, project_id=DEFAULT_PROJECT_ID
        )

    slow = SlowTransport()
    holder = make_deliverer(sessions, dispatcher, settings, slow)
    delivering = asyncio.ensure_future(holder.deliver(DeliveryJob(email.id, attempt=1)))
    try:
        first = await eventually(
            lambda: _lease(sessions, email.id), lambda lease: lease is not None, what="the claim"
        )
        assert first is not None
        # Past the first lease's end, it has been renewed more than once ...
        await eventually(
            lambda: _lease(sessions, email.id),
            lambda lease: lease is not None and (lease - first).total_seconds() >= 3.5,
            timeout=20,
            what="the lease renewed past its first end",
        )
        # ... so another worker finds it taken, and does not send it a second time.
        other = MemoryTransport()
        assert (
            await make_deliverer(sessions, dispatcher, settings, other).deliver(
                DeliveryJob(email.id, attempt=2)
            )
            == "skipped"
        )
    finally:
        slow.release.set()
        assert await asyncio.wait_for(delivering, timeout=10) == "sent"
    assert len(slow.sent) == 1
    assert other.attempts == []
