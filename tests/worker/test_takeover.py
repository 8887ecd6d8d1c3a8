"""A worker process killed outright: another one sends its emails within seconds.

Real worker processes, real PostgreSQL, Redis and SMTP; the defaults of the worker
registry (WORKER_REGISTRY_INTERVAL, WORKER_TAKEOVER_AFTER, SWEEP_INTERVAL) are used.
"""

from __future__ import annotations

import asyncio
import sys

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.emails.models import Email, WorkerProcess
from mailroom.settings import Settings
from tests.support.processes import worker_env
from tests.support.smtp_server import SmtpTestServer
from tests.support.waiting import eventually

pytestmark = pytest.mark.usefixtures("clean")

EMAILS = 100
RECOVERY_BOUND = 30.0  # seconds from the kill until every email is sent


async def _sent(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        stmt = select(func.count()).select_from(Email).where(Email.status == "sent")
        return int((await session.execute(stmt)).scalar_one())


async def _held_by(sessions: async_sessionmaker[AsyncSession], pid: int) -> int:
    """Emails in `sending` claimed by the registered worker with this pid."""
    async with sessions() as session:
        stmt = (
            select(func.count())
            .select_from(Email)
            .join(WorkerProcess, WorkerProcess.id == Email.worker_id)
            .where(Email.status == "sending", WorkerProcess.pid == pid)
        )
        return int((await session.execute(stmt)).scalar_one())


async def _registered(sessions: async_sessionmaker[AsyncSession], *pids: int) -> int:
    """How many of these processes have registered (other tests' rows may be there too)."""
    async with sessions() as session:
        stmt = select(func.count()).select_from(WorkerProcess).where(WorkerProcess.pid.in_(pids))
        return int((await session.execute(stmt)).scalar_one())


async def _start(env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mailroom",
        "worker",
        "--concurrency",
        "8",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


@pytest.mark.slow
async def test_a_killed_workers_emails_are_sent_within_seconds(
    client: httpx.AsyncClient,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    smtp_server: SmtpTestServer,
) -> None:
    # The default lease (300 s) is far beyond the bound: only the takeover can meet it.
    env = worker_env(settings, smtp_server, LOG_LEVEL="WARNING", SENDING_LEASE="300")
    for name in ("SWEEP_INTERVAL", "SWEEP_GRACE", "WORKER_REGISTRY_INTERVAL"):
        env.pop(name, None)
    env.pop("WORKER_TAKEOVER_AFTER", None)
    smtp_server.handler.data_delay = 0.3  # keep sends in flight when the kill lands
    for i in range(EMAILS):
        body = {"to": f"user{i}@example.com", "subject": "s", "text": "t"}
        assert (await client.post("/send", json=body)).status_code == 202
    victim = await _start(env)
    survivor = await _start(env)
    try:
        await eventually(
            lambda: _registered(sessions, victim.pid, survivor.pid),
            lambda n: n == 2,
            timeout=30,
            what="up",
        )
        held = await eventually(
            lambda: _held_by(sessions, victim.pid), lambda n: n >= 4, timeout=30, what="held"
        )
        victim.kill()  # SIGKILL: no drain, no unregistering
        await victim.wait()
        killed_at = asyncio.get_running_loop().time()
        # Nothing the victim claimed can change until it is taken over.
        held = await _held_by(sessions, victim.pid)
        assert held > 0
        assert await _sent(sessions) < EMAILS
        await eventually(
            lambda: _sent(sessions), lambda n: n == EMAILS, timeout=90, what="all sent"
        )
        recovered_in = asyncio.get_running_loop().time() - killed_at
    finally:
        for process in (victim, survivor):
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert recovered_in <= RECOVERY_BOUND, f"recovered in {recovered_in:.1f} s"
    received = [m.parsed()["Message-ID"] for m in smtp_server.handler.messages()]
    assert len(set(received)) == EMAILS
    # A duplicate only for what the killed worker had in flight.
    assert len(received) - EMAILS <= held
