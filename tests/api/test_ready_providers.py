"""/ready reports each SMTP provider's circuit breaker as the workers published it."""

from __future__ import annotations

import httpx
import redis.asyncio as redis

from mailroom.settings import Settings
from mailroom.transport.pacing import Pacer


async def test_ready_reports_each_provider_breaker(
    client: httpx.AsyncClient, settings: Settings, redis_client: redis.Redis
) -> None:
    pacer = Pacer(redis_client, settings.queue_prefix)
    await pacer.publish({"ses": "open", "brevo": "closed"})
    response = await client.get("/ready")
    assert response.status_code == 200, response.text
    assert response.json()["providers"] == {
        "ses": {"breaker": "open"},
        "brevo": {"breaker": "closed"},
    }
