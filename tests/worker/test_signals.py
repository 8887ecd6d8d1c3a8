"""`mailroom worker` as a real process: SIGTERM drains it and it exits cleanly."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.emails.models import Email
from mailroom.settings import Settings
from tests.conftest import running_worker
from tests.support.processes import worker_env
from tests.support.smtp_server import SmtpTestServer
from tests.support.waiting import eventually

pytestmark = pytest.mark.usefixtures("clean")


async def _sent(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        stmt = select(func.count()).select_from(Email).where(Email.status == "sent")
        return int((await session.execute(stmt)).scalar_one())


async def _start_worker(
    env: dict[str, str], *, concurrency: int, output: int
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mailroom",
        "worker",
        "--concurrency",
        str(concurrency),
        env=env,
        stdout=output,
        stderr=output,
    )


@pytest.mark.slow
async def test_sigterm_stops_the_worker_cleanly_after_its_deliveries(
    client: httpx.AsyncClient,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    smtp_server: SmtpTestServer,
) -> None:
    env = worker_env(settings, smtp_server, LOG_FORMAT="json")
    worker = await _start_worker(env, concurrency=4, output=asyncio.subprocess.PIPE)
    try:
        for i in range(10):
            body = {"to": f"user{i}@example.com", "subject": "s", "text": "t"}
            assert (await client.post("/send", json=body)).status_code == 202
        await eventually(lambda: _sent(sessions), lambda n: n == 10, timeout=30, what="sent")
        worker.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(worker.communicate(), timeout=30)
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
    log = stderr.decode()
    assert worker.returncode == 0, log
    assert '"worker.stopped"' in log, log
    assert len(smtp_server.handler.messages()) == 10


@pytest.mark.slow
async def test_sigkill_mid_run_loses_nothing(
    client: httpx.AsyncClient,
    settings_factory: Callable[..., Settings],
    sessions: async_sessionmaker[AsyncSession],
    smtp_server: SmtpTestServer,
) -> None:
    # A short lease so the killed worker's emails are taken over within the test.
    settings = settings_factory(sending_lease=3, sweep_interval=0.5, sweep_grace=1)
    smtp_server.handler.data_delay = 0.05  # keep sends in flight when the kill lands
    env = worker_env(settings, smtp_server, SENDING_LEASE="3", LOG_LEVEL="WARNING")
    for i in range(40):
        body = {"to": f"user{i}@example.com", "subject": "s", "text": "t"}
        assert (await client.post("/send", json=body)).status_code == 202
    worker = await _start_worker(env, concurrency=8, output=asyncio.subprocess.DEVNULL)
    try:
        await eventually(lambda: _sent(sessions), lambda n: n >= 3, timeout=30, what="some sent")
        worker.kill()  # SIGKILL: no drain, no cleanup
        await worker.wait()
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
    assert await _sent(sessions) < 40

    smtp_server.handler.data_delay = 0.0
    async with running_worker(settings, smtp_server, concurrency=8):
        await eventually(lambda: _sent(sessions), lambda n: n == 40, timeout=60, what="all sent")
    received = {m.parsed()["Message-ID"] for m in smtp_server.handler.messages()}
    assert len(received) == 40  # every email arrived; a kill mid-DATA may add a duplicate
