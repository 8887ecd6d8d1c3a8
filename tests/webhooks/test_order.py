"""One email's deliveries to one endpoint are claimed in the order of its events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select, text
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


async def test_the_order_check_probes_the_index_even_under_a_plan_made_on_an_empty_table(
    clean: None, sessions: async_sessionmaker[AsyncSession]
) -> None:
    # The dispatcher's statement is prepared once per connection and its plan cached, so
    # the plan made while the outbox was empty serves it when a backlog has built up. The
    # check must then still be one index probe per candidate, never a read of every
    # pending delivery for each one (seconds per pass at a backlog of thousands).
    async with sessions() as session:
        project = await session.scalar(text("SELECT id FROM projects LIMIT 1"))
        endpoint = await session.scalar(
            text(
                "INSERT INTO webhook_endpoints (id, project_id, url, events, secret) "
                "VALUES (gen_random_uuid(), :p, 'https://hooks.example.com/x', "
                "ARRAY['email.sent'], 'whsec_x') RETURNING id"
            ),
            {"p": project},
        )
        event = await session.scalar(
            text(
                "INSERT INTO email_events (id, project_id, type, data) "
                "VALUES (gen_random_uuid(), :p, 'webhook.test', '{}') RETURNING id"
            ),
            {"p": project},
        )
        await session.execute(text("ANALYZE webhook_deliveries"))  # statistics: empty
        await session.execute(
            text(
                "INSERT INTO webhook_deliveries (id, event_id, endpoint_id, email_id, "
                "event_seq, status, next_attempt_at) "
                "SELECT gen_random_uuid(), :e, :w, gen_random_uuid(), g, 'pending', now() "
                "FROM generate_series(1, 20000) g"
            ),
            {"e": event, "w": endpoint},
        )
        await session.execute(text("SET LOCAL plan_cache_mode = force_generic_plan"))
        await session.execute(text(f"PREPARE due_pass(int, interval) AS {_due_sql()}"))
        plan = "\n".join(
            await session.scalars(text("EXPLAIN EXECUTE due_pass(1000, '35 seconds')"))
        )
        await session.execute(text("DEALLOCATE due_pass"))
        await session.rollback()
    assert "Anti Join" not in plan, plan
    probes = [line for line in plan.splitlines() if "webhook_deliveries p" in line]
    assert probes and all("Index" in line for line in probes), plan
    assert "(email_id = d.email_id)" in plan, plan


def _due_sql() -> str:
    """The dispatcher's statement with positional parameters, as asyncpg prepares it."""
    sql = str(deliveries_repository._DUE)
    return sql.replace(":limit", "$1").replace("CAST(:again AS interval)", "$2")
