"""The deliveries log is kept WEBHOOK_LOG_DAYS: older attempts are purged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.webhooks.deliveries_repository import purge_attempts
from mailroom.webhooks.models import EmailEvent, WebhookAttempt, WebhookDelivery
from tests.support.api_calls import create_endpoint
from tests.support.webhook_receiver import WebhookReceiver


async def _count(sessions: async_sessionmaker[AsyncSession], model: type) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_old_attempts_go_and_recent_ones_stay(
    hooks: httpx.AsyncClient, receiver: WebhookReceiver, sessions: async_sessionmaker[AsyncSession]
) -> None:
    endpoint = await create_endpoint(hooks, receiver.url)
    for _ in range(3):
        assert (await hooks.post(f"/webhooks/{endpoint['id']}/test")).status_code == 200
    old = datetime.now(UTC) - timedelta(days=40)
    async with sessions() as session:
        first = await session.scalar(select(func.min(WebhookAttempt.id)))
        await session.execute(
            update(WebhookAttempt).where(WebhookAttempt.id != first).values(created_at=old)
        )
        await session.execute(update(WebhookDelivery).values(updated_at=old))
        await session.execute(update(EmailEvent).values(created_at=old))
        await session.commit()
    async with sessions() as session:
        gone = await purge_attempts(session, before=datetime.now(UTC) - timedelta(days=30), limit=1)
        gone += await purge_attempts(
            session, before=datetime.now(UTC) - timedelta(days=30), limit=10
        )
        await session.commit()
    assert gone == 2
    assert await _count(sessions, WebhookAttempt) == 1
    assert await _count(sessions, WebhookDelivery) == 1  # the one with an attempt left
    assert await _count(sessions, EmailEvent) == 1
    log = (await hooks.get(f"/webhooks/{endpoint['id']}/deliveries")).json()["data"]
    assert len(log) == 1
