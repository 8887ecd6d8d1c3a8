"""Small versions of the fault-injection scenarios: each fault, and nothing lost."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis.asyncio as redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.emails.models import DeliveryAttempt, Email
from mailroom.settings import Settings
from tests.conftest import running_worker
from tests.support.smtp_server import SmtpTestServer
from tests.support.waiting import eventually

pytestmark = pytest.mark.usefixtures("clean")


async def _send(client: httpx.AsyncClient, n: int, subject: str = "s") -> list[str]:
    ids = []
    for i in range(n):
        body = {"to": f"user{i}@example.com", "subject": subject, "text": "t"}
        response = await client.post("/send", json=body)
        assert response.status_code == 202, response.text
        ids.append(response.json()["id"])
    return ids


async def _statuses(sessions: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    async with sessions() as session:
        rows = await session.execute(select(Email.status, func.count()).group_by(Email.status))
        return {row[0]: row[1] for row in rows}


async def _attempts(
    sessions: async_sessionmaker[AsyncSession],
) -> list[tuple[str, int, int | None]]:
    async with sessions() as session:
        rows = await session.execute(
            select(Email.subject, DeliveryAttempt.attempt_number, DeliveryAttempt.smtp_code)
            .join(DeliveryAttempt, DeliveryAttempt.email_id == Email.id)
            .order_by(Email.subject, DeliveryAttempt.attempt_number)
        )
        return [(row[0], row[1], row[2]) for row in rows]


def _all(status: str, n: int) -> Callable[[dict[str, int]], bool]:
    return lambda found: found.get(status, 0) == n


async def test_redis_forgetting_every_job_mid_run_loses_nothing(
    client: httpx.AsyncClient,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    smtp_server: SmtpTestServer,
    redis_client: redis.Redis,
    namespace: str,
) -> None:
    smtp_server.handler.data_delay = 0.01
    ids = await _send(client, 60)
    async with running_worker(settings, smtp_server, concurrency=2):
        await eventually(lambda: _statuses(sessions), lambda s: s.get("sent", 0) >= 5)
        # What a FLUSHALL (or a Redis restart without persistence) does to this queue.
        keys = [key async for key in redis_client.scan_iter(match=f"{namespace}:*")]
        await redis_client.delete(*keys)
        await eventually(
            lambda: _statuses(sessions), _all("sent", len(ids)), timeout=60, what="all sent"
        )
    received = {m.parsed()["Message-ID"] for m in smtp_server.handler.messages()}
    assert len(received) == len(ids)


async def test_an_smtp_outage_defers_and_nothing_fails(
    client: httpx.AsyncClient,
    settings_factory: Callable[..., Settings],
    sessions: async_sessionmaker[AsyncSession],
    smtp_server: SmtpTestServer,
) -> None:
    settings = settings_factory(max_attempts=20)
    port = smtp_server.port
    await smtp_server.stop()
    ids = await _send(client, 10)
    async with running_worker(settings, smtp_server):
        await eventually(
            lambda: _statuses(sessions), _all("retrying", len(ids)), what="all deferred"
        )
        await smtp_server.start(port=port)  # the server comes back
        await eventually(
            lambda: _statuses(sessions), _all("sent", len(ids)), timeout=60, what="all sent"
        )
    async with sessions() as session:
        first = await session.execute(
            select(DeliveryAttempt.outcome, DeliveryAttempt.smtp_code).where(
                DeliveryAttempt.attempt_number == 1
            )
        )
        assert {(row[0], row[1]) for row in first} == {("transient", None)}


@pytest.mark.parametrize("code", [421, 451, 452])
async def test_temporary_replies_twice_then_250_take_three_attempts(
    client: httpx.AsyncClient,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    smtp_server: SmtpTestServer,
    code: int,
) -> None:
    smtp_server.handler.data_replies.extend([f"{code} 4.3.0 Not now"] * 2)
    await _send(client, 1, subject=f"code-{code}")
    async with running_worker(settings, smtp_server):
        await eventually(lambda: _statuses(sessions), _all("sent", 1), timeout=30)
    assert await _attempts(sessions) == [
        (f"code-{code}", 1, code),
        (f"code-{code}", 2, code),
        (f"code-{code}", 3, 250),
    ]


@pytest.mark.parametrize("code", [550, 553, 554])
async def test_permanent_replies_take_exactly_one_attempt(
    client: httpx.AsyncClient,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    smtp_server: SmtpTestServer,
    code: int,
) -> None:
    smtp_server.handler.data_replies.append(f"{code} 5.7.1 No")
    await _send(client, 1, subject=f"code-{code}")
    async with running_worker(settings, smtp_server):
        await eventually(lambda: _statuses(sessions), _all("failed", 1), timeout=30)
    assert await _attempts(sessions) == [(f"code-{code}", 1, code)]


async def test_a_server_slower_than_the_timeout_is_recorded_and_retried(
    client: httpx.AsyncClient,
    settings_factory: Callable[..., Settings],
    sessions: async_sessionmaker[AsyncSession],
    smtp_server: SmtpTestServer,
) -> None:
    # The final reply (after the body) is waited for up to SMTP_DATA_TIMEOUT.
    settings = settings_factory(smtp_timeout=0.3, smtp_data_timeout=0.3)
    smtp_server.handler.data_delay = 1.0
    await _send(client, 1, subject="slow")

    async def first_attempt() -> list[Any]:
        async with sessions() as session:
            rows = await session.execute(
                select(
                    DeliveryAttempt.outcome, DeliveryAttempt.message, DeliveryAttempt.duration_ms
                )
            )
            return [tuple(row) for row in rows]

    async with running_worker(settings, smtp_server):
        [(outcome, message, duration_ms)] = await eventually(
            first_attempt, lambda rows: len(rows) >= 1, what="first attempt"
        )
        assert outcome == "unknown"
        assert "timed out" in message.lower()
        assert 250 <= duration_ms < 1000  # cut at the configured timeout, not the server's pace
        smtp_server.handler.data_delay = 0.0  # the server speeds up again
        await eventually(lambda: _statuses(sessions), _all("sent", 1), timeout=30)
