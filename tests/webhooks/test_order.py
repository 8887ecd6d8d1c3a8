"""One email's deliveries to one endpoint are claimed in the order of its events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.webhooks import deliveries_repository
from mailroom.webhooks.deliveries_repository import AttemptRow
from mailroom.webhooks.models import WebhookDelivery
from tests.support.api_calls import create_endpoint

LEASE = timedelta(seconds=30)


async def test_a_later_event_waits_for_the_earlier_one_to_be_tried(
    hooks: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await create_endpoint(hooks, "https://hooks.example.com/x")
    send_at = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    sent = await hooks.post(
        "/send", json={"to": "a@example.com", "subject": "s", "text": "t", "sendAt": send_at}
    )
    assert (await hooks.post(f"/emails/{sent.json()['id']}/cancel")).status_code == 200
    async with sessions() as session:
        first, second = (
            await session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.event_seq))
        ).all()
        claimed = await deliveries_repository.claim(session, [second.id, first.id], LEASE)
        assert [c.id for c in claimed] == [first.id]
        assert [c.event_type for c in claimed] == ["email.scheduled"]
        # While the first is being tried, the second still waits.
        assert await deliveries_repository.claim(session, [second.id], LEASE) == []
        now = datetime.now(UTC)
        row = AttemptRow(
            delivery_id=first.id,
            endpoint_id=first.endpoint_id,
            event_id=first.event_id,
            event_type="email.scheduled",
            attempt=1,
            status="pending",
            response_code=500,
            duration_ms=3,
            response_body=None,
            error="The receiver answered 500",
            next_attempt_at=now + timedelta(minutes=5),
        )
        assert await deliveries_repository.record(session, [row]) == {first.id}
        # A duplicate record of the same attempt changes nothing.
        assert await deliveries_repository.record(session, [row]) == set()
        # In backoff, the earlier one no longer holds the later one back.
        [later] = await deliveries_repository.claim(session, [second.id], LEASE)
        assert later.event_type == "email.cancelled" and later.attempt == 1
        await session.rollback()
