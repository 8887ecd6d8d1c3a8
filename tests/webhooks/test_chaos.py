"""Chaos: the worker SIGKILLed and Redis flushed while webhooks are being delivered."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable

import httpx
import pytest
import redis.asyncio as redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks.webhooks import Webhook

from mailroom.settings import Settings
from mailroom.webhooks.models import EmailEvent, WebhookDelivery
from tests.conftest import running_worker
from tests.support.api_calls import create_endpoint
from tests.support.processes import worker_env
from tests.support.smtp_server import SmtpTestServer
from tests.support.waiting import eventually
from tests.support.webhook_receiver import Reply, WebhookReceiver

EMAILS = 30


async def _event_ids(sessions: async_sessionmaker[AsyncSession]) -> set[str]:
    async with sessions() as session:
        return {str(i) for i in await session.scalars(select(EmailEvent.id))}


async def _undelivered(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        rows = await session.scalars(
            select(WebhookDelivery.id).where(WebhookDelivery.status != "succeeded")
        )
        return len(rows.all())


@pytest.mark.slow
async def test_a_killed_worker_and_a_flushed_redis_lose_no_event(
    hooks: httpx.AsyncClient,
    settings_factory: Callable[..., Settings],
    sessions: async_sessionmaker[AsyncSession],
    smtp_server: SmtpTestServer,
    receiver: WebhookReceiver,
    redis_client: redis.Redis,
    namespace: str,
) -> None:
    local = {
        "webhook_allow_http": True,
        "webhook_allow_private": True,
        "webhook_retry_schedule": "1,1,1,1,1,1,1,1",
        "webhook_poll_interval": 0.2,
        "webhook_timeout": 1,
        "sending_lease": 3,
        "sweep_interval": 0.5,
        "sweep_grace": 1,
    }
    settings = settings_factory(**local)
    receiver.behaviour = lambda _: Reply(delay=0.05)  # keep requests in flight
    endpoint = await create_endpoint(hooks, receiver.url)
    for i in range(EMAILS):
        body = {"to": f"user{i}@example.com", "subject": "s", "text": "t"}
        assert (await hooks.post("/send", json=body)).status_code == 202
    env = worker_env(
        settings,
        smtp_server,
        LOG_LEVEL="WARNING",
        **{k.upper(): str(v).lower() if isinstance(v, bool) else str(v) for k, v in local.items()},
    )
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mailroom",
        "worker",
        "--concurrency",
        "4",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await eventually(
            lambda: _count(receiver), lambda n: n >= 10, timeout=60, what="some webhooks"
        )
        worker.kill()  # SIGKILL: requests cut short, leases left behind
        await worker.wait()
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
    keys = [key async for key in redis_client.scan_iter(match=f"{namespace}:*")]
    if keys:
        await redis_client.delete(*keys)  # what FLUSHALL does to this test's queues
    assert await _undelivered(sessions) > 0

    receiver.behaviour = lambda _: Reply()
    async with running_worker(settings, smtp_server, concurrency=4):
        await eventually(
            lambda: _undelivered(sessions), lambda n: n == 0, timeout=90, what="all delivered"
        )
    expected = await _event_ids(sessions)
    assert len(expected) == 2 * EMAILS  # queued and sent, each
    got = set()
    for request in receiver.received:
        Webhook(endpoint["secret"]).verify(request.body, request.headers)
        got.add(request.headers["webhook-id"])
    assert got == expected  # every event; one cut short by the kill may come twice


async def _count(receiver: WebhookReceiver) -> int:
    return len(receiver.received)
