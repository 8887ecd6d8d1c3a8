"""Webhook fixtures: settings that let webhooks reach the local receivers, and a client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from mailroom.settings import Settings
from tests.conftest import api_client

LOCAL = {"webhook_allow_http": True, "webhook_allow_private": True}


@pytest.fixture
def webhook_settings(settings_factory: Callable[..., Settings]) -> Callable[..., Settings]:
    """Settings of ``local_settings`` with these overrides (a retry schedule, a timeout…)."""

    def make(**overrides: Any) -> Settings:
        quick = {"webhook_retry_schedule": "1,1,1", "webhook_poll_interval": 0.1}
        return settings_factory(**{**LOCAL, **quick, **overrides})

    return make


@pytest.fixture
def local_settings(webhook_settings: Callable[..., Settings]) -> Settings:
    """Receivers on 127.0.0.1 over http allowed (as `mailroom dev` does); quick retries."""
    return webhook_settings()


@pytest.fixture
async def hooks(
    local_settings: Settings, clean: None, api_key: str
) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(local_settings, key=api_key) as client:
        yield client
