"""The worker registry: a live worker keeps its emails, a silent one loses them in seconds."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.emails import accepting
from mailroom.emails.models import Email
from mailroom.emails.schemas.requests import SendEmailRequest
from mailroom.projects.models import DEFAULT_PROJECT_ID
from mailroom.queue.dispatcher import Dispatcher
from mailroom.queue.jobs import DeliveryJob
from mailroom.settings import Settings
from mailroom.transport.memory import MemoryTransport
from mailroom.unit_of_work import unit_of_work
from mailroom.worker.delivery import Deliverer
from mailroom.worker.registry import ClaimsPaused, WorkerRegistry
from tests.support.waiting import eventually
from tests.worker.conftest import make_deliverer
from tests.worker.test_leases import SlowTransport

pytestmark = pytest.mark.usefixtures("clean")


async def _accept(
    sessions: async_sessionmaker[AsyncSession], dispatcher: Dispatcher, settings: Settings
) -> Email:
    request = SendEmailRequest.model_validate(
        {"to": "jane@example.com", "subject": "s", "text": "t"}
    )
    async with unit_of_work(sessions, dispatcher.dispatch) as uow:
        return await accepting.accept_email(
            uow, request, settings=settings, request_id=None, project_id=DEFAULT_PROJECT_ID
        )


def _registered(
    sessions: async_sessionmaker[AsyncSession],
    dispatcher: Dispatcher,
    settings: Settings,
    transport: SlowTransport | MemoryTransport,
    registry: WorkerRegistry,
) -> Deliverer:
    return Deliverer(
        sessions=sessions,
        dispatcher=dispatcher,
        transport=transport,
        settings=settings,
        registry=registry,
    )


async def test_a_live_worker_keeps_its_email_and_a_silent_one_loses_it(
    sessions: async_sessionmaker[AsyncSession],
    dispatcher: Dispatcher,
    settings_factory: Callable[..., Settings],
) -> None:
    # A lease far beyond the test: only the heartbeat decides.
    settings = settings_factory(
        sending_lease=300, worker_registry_interval=0.5, worker_takeover_after=4
    )
    email = await _accept(sessions, dispatcher, settings)
    registry = WorkerRegistry(sessions, settings)
    await registry.beat()
    beating = asyncio.ensure_future(registry.run())
    slow = SlowTransport()
    holder = _registered(sessions, dispatcher, settings, slow, registry)
    delivering = asyncio.ensure_future(holder.deliver(DeliveryJob(email.id, attempt=1)))
    other_registry = WorkerRegistry(sessions, settings)
    await other_registry.beat()
    other_beating = asyncio.ensure_future(other_registry.run())
    other = MemoryTransport()
    taker = _registered(sessions, dispatcher, settings, other, other_registry)
    try:
        await eventually(lambda: _sending(sessions, email), lambda s: s, what="the claim")
        # Past the takeover window, the holder's heartbeat still vouches for it.
        await asyncio.sleep(0)  # let the holder start its send
        started = asyncio.get_running_loop().time()
        while asyncio.get_running_loop().time() - started < 5.0:
            assert await taker.deliver(DeliveryJob(email.id, attempt=2)) == "skipped"
            await asyncio.sleep(0.2)
        # Silent: the holder's heartbeat stops; the email is taken over within the window.
        beating.cancel()
        await eventually(
            lambda: taker.deliver(DeliveryJob(email.id, attempt=2)),
            lambda status: status == "sent",
            timeout=30,  # far below the lease: the stale heartbeat alone allowed it
            interval=0.1,
            what="taken over",
        )
        assert len(other.attempts) == 1
        # The holder's late answer is not recorded; it is logged as a possible duplicate.
        with structlog.testing.capture_logs() as logs:
            slow.release.set()
            assert await asyncio.wait_for(delivering, timeout=10) == "claim_lost"
        [lost] = [e for e in logs if e["event"] == "email.claim_lost"]
        assert lost["possible_duplicate"] is True
        assert "sent twice" in lost["reason"]
        # A worker whose own heartbeat is stale claims nothing.
        assert not registry.fresh()
        again = await _accept(sessions, dispatcher, settings)
        with pytest.raises(ClaimsPaused):
            await holder.deliver(DeliveryJob(again.id, attempt=1))
        assert (
            await make_deliverer(sessions, dispatcher, settings, MemoryTransport()).deliver(
                DeliveryJob(again.id, attempt=1)
            )
            == "sent"
        )
    finally:
        slow.release.set()
        beating.cancel()
        other_beating.cancel()
        await asyncio.gather(delivering, beating, other_beating, return_exceptions=True)


async def _sending(sessions: async_sessionmaker[AsyncSession], email: Email) -> bool:
    async with sessions() as session:
        found = await session.get(Email, email.id)
        return found is not None and found.status == "sending"
