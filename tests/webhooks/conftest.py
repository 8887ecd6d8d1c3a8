"""Webhook fixtures: settings that let webhooks reach the local receivers, and a client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from mailroom.settings import Settings
from tests.conftest import api_client
from tests.support.webhook_receiver import WebhookReceiver, webhook_receiver

LOCAL = {"webhook_allow_http": True, "webhook_allow_private": True}


@pytest.fixture
def local_settings(settings_factory: Callable[..., Settings]) -> Settings:
    """Receivers on 127.0.0.1 over http allowed (as `mailroom dev` does); quick retries."""
    return settings_factory(**LOCAL, webhook_retry_schedule="1,1,1", webhook_poll_interval=0.1)


@pytest.fixture
async def hooks(
    local_settings: Settings, clean: None, api_key: str
) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(local_settings, key=api_key) as client:
        yield client


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with webhook_receiver() as running:
        yield running


async def create_endpoint(client: httpx.AsyncClient, url: str, **fields: Any) -> dict[str, Any]:
    response = await client.post("/webhooks", json={"url": url, **fields})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created
