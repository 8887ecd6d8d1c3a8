"""What clients see while PostgreSQL or Redis is down: never a 500, never a lost 202."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.emails.models import Email
from mailroom.settings import Settings
from tests.api.shapes import assert_error
from tests.conftest import api_client

pytestmark = pytest.mark.usefixtures("clean")

BODY = {"to": "jane@example.com", "subject": "Hello", "text": "Hi"}
NOWHERE = "127.0.0.1:1"  # nothing listens on port 1


async def test_without_postgresql_send_is_503_with_retry_after(
    settings_factory: Callable[..., Settings], api_key: str
) -> None:
    settings = settings_factory(database_url=f"postgresql+asyncpg://postgres@{NOWHERE}/none")
    async with api_client(settings, key=api_key) as client:
        response = await client.post("/send", json=BODY)
        assert_error(response, 503, "service_unavailable")
        assert int(response.headers["Retry-After"]) >= 1

        assert_error(await client.get("/logs/email"), 503, "service_unavailable")

        ready = await client.get("/ready")
        error = assert_error(ready, 503, "not_ready")
        assert error["details"]["database"].startswith("down")
        assert error["details"]["redis"] == "ok"


async def test_without_redis_send_still_stores_and_answers_202_fast(
    settings_factory: Callable[..., Settings],
    api_key: str,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    settings = settings_factory(redis_url=f"redis://{NOWHERE}/0", enqueue_timeout=1)
    async with api_client(settings, key=api_key) as client:
        ids = []
        timings = []
        for _ in range(5):
            started = time.monotonic()
            response = await client.post("/send", json=BODY)
            timings.append(time.monotonic() - started)
            assert response.status_code == 202, response.text
            ids.append(response.json()["id"])
        # The first request finds Redis down; the others do not wait for it again.
        assert max(timings[1:]) < settings.enqueue_timeout

        ready = await client.get("/ready")
        error = assert_error(ready, 503, "not_ready")
        assert error["details"]["redis"].startswith("down")

    async with sessions() as session:
        stored = await session.execute(
            select(func.count()).select_from(Email).where(Email.status == "queued")
        )
        assert stored.scalar_one() == len(ids)
