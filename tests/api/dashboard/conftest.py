"""Fixtures of the dashboard's tests: the API app in process, a browser-like client."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.settings import Settings
from tests.conftest import api_client, make_key


async def sign_in(
    client: httpx.AsyncClient, key: str, next_page: str = "/dashboard"
) -> httpx.Response:
    """Sign in as a browser does: load the form (its CSRF cookie), then post it."""
    form = await client.get("/dashboard/login", params={"next": next_page})
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token is not None
    return await client.post(
        "/dashboard/login",
        data={"csrf": token.group(1), "key": key, "next": next_page, "tz": "Europe/Berlin"},
    )


def csrf_of(page: httpx.Response) -> str:
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token is not None, "the page has no CSRF token"
    return token.group(1)


@pytest.fixture
async def browser_client(settings: Settings, clean: None) -> AsyncIterator[httpx.AsyncClient]:
    """The API with no credentials: a client that keeps cookies, as a browser does."""
    async with api_client(settings) as client:
        yield client


@pytest.fixture
async def signed_in(
    browser_client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> httpx.AsyncClient:
    key = await make_key(sessions)
    answer = await sign_in(browser_client, key)
    assert answer.status_code == 303
    return browser_client
