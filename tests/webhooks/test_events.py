"""Events are written in the transaction of each status change, and fanned out."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.projects.models import DEFAULT_PROJECT_ID
from mailroom.webhooks.events import emit
from mailroom.webhooks.models import EmailEvent, WebhookDelivery
from tests.support.api_calls import create_endpoint


async def _types(client: httpx.AsyncClient, email_id: str) -> list[str]:
    return [e["type"] for e in (await client.get(f"/emails/{email_id}")).json()["events"]]


def _in_a_day() -> str:
    return (datetime.now(UTC) + timedelta(days=1)).isoformat()


async def test_scheduled_then_cancelled(hooks: httpx.AsyncClient) -> None:
    sent = await hooks.post(
        "/send",
        json={"to": "a@example.com", "subject": "s", "text": "t", "sendAt": _in_a_day()},
    )
    assert sent.status_code == 202, sent.text
    email_id = sent.json()["id"]
    assert await _types(hooks, email_id) == ["email.scheduled"]
    assert (await hooks.post(f"/emails/{email_id}/cancel")).status_code == 200
    assert await _types(hooks, email_id) == ["email.scheduled", "email.cancelled"]


async def test_a_batch_writes_one_event_per_email_and_one_delivery_per_endpoint(
    hooks: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await create_endpoint(hooks, "https://a.example.com/x", events=["email.queued"])
    await create_endpoint(hooks, "https://b.example.com/x", events=["email.sent"])
    await create_endpoint(hooks, "https://c.example.com/x")
    emails = [{"to": f"u{i}@example.com", "subject": "s", "text": "t"} for i in range(5)]
    assert (await hooks.post("/send/batch", json={"emails": emails})).status_code == 202
    async with sessions() as session:
        events = await session.scalar(select(func.count()).select_from(EmailEvent))
        deliveries = await session.scalar(select(func.count()).select_from(WebhookDelivery))
    assert events == 5
    assert deliveries == 10  # a (queued) and c (every type); b waits for email.sent


async def test_emit_records_an_event_that_is_delivered_like_the_others(
    hooks: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await create_endpoint(hooks, "https://a.example.com/x", events=["email.bounced"])
    sent = await hooks.post("/send", json={"to": "a@example.com", "subject": "s", "text": "t"})
    email_id = uuid.UUID(sent.json()["id"])
    async with sessions() as session:
        event_id = await emit(
            session,
            email_id=email_id,
            project_id=DEFAULT_PROJECT_ID,
            type="email.bounced",
            data={"emailId": str(email_id), "status": "sent"},
        )
        await session.commit()
        delivery = await session.scalar(
            select(WebhookDelivery).where(WebhookDelivery.event_id == event_id)
        )
    assert delivery is not None and delivery.status == "pending"
    assert await _types(hooks, str(email_id)) == ["email.queued", "email.bounced"]
    async with sessions() as session:
        with pytest.raises(ValueError, match="unknown event type"):
            await emit(session, email_id=None, project_id=DEFAULT_PROJECT_ID, type="x", data={})
