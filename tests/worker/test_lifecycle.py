"""Stopping and restarting workers mid-run loses nothing."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.emails.models import Email
from mailroom.settings import Settings
from tests.conftest import running_worker
from tests.support.smtp_server import SmtpTestServer
from tests.support.waiting import eventually

pytestmark = pytest.mark.usefixtures("clean")


async def _count(sessions: async_sessionmaker[AsyncSession], *statuses: str) -> int:
    async with sessions() as session:
        stmt = select(func.count()).select_from(Email).where(Email.status.in_(statuses))
        return int((await session.execute(stmt)).scalar_one())


async def _send_many(client: httpx.AsyncClient, n: int) -> set[str]:
    message_ids = set()
    for i in range(n):
        body = {"to": f"user{i}@example.com", "subject": f"n{i}", "text": "t"}
        response = await client.post("/send", json=body)
        assert response.status_code == 202
        message_ids.add(response.json()["messageId"])
    return message_ids


# Graceful: a grace period no drain can outlast, even on a starved CI machine.
@pytest.mark.parametrize("grace", [120.0, 0.0], ids=["graceful", "forced"])
async def test_a_worker_restart_mid_run_loses_nothing(
    client: httpx.AsyncClient,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    smtp_server: SmtpTestServer,
    grace: float,
) -> None:
    smtp_server.handler.data_delay = 0.02  # keep sends in flight when the worker stops
    message_ids = await _send_many(client, 40)

    async with running_worker(settings, smtp_server, concurrency=4, grace_period=grace):
        await eventually(lambda: _count(sessions, "sent"), lambda n: n >= 5, what="some deliveries")
    # Stopped mid-run: some sent, the rest still waiting (none lost in `sending`
    # after a graceful stop; a forced stop hands its in-flight emails back for retry).
    assert await _count(sessions, "sent") < 40
    if grace:
        assert await _count(sessions, "sending") == 0

    async with running_worker(settings, smtp_server, concurrency=4):
        await eventually(
            lambda: _count(sessions, "sent"), lambda n: n == 40, timeout=60, what="all sent"
        )

    received = [m.parsed()["Message-ID"] for m in smtp_server.handler.messages()]
    assert set(received) == message_ids
    if grace:
        assert len(received) == 40  # a graceful stop finished what it had started
