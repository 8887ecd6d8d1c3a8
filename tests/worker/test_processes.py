"""`mailroom worker --processes N`: N children, restarted if one dies, stopped by SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.emails.models import Email
from mailroom.settings import Settings
from tests.support.processes import worker_env
from tests.support.smtp_server import SmtpTestServer
from tests.support.waiting import eventually

pytestmark = pytest.mark.usefixtures("clean")


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.update(int(p) for p in text)
    return found


def _exists(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


async def _sent(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        stmt = select(func.count()).select_from(Email).where(Email.status == "sent")
        return int((await session.execute(stmt)).scalar_one())


@pytest.mark.slow
async def test_the_supervisor_runs_restarts_and_stops_its_worker_processes(
    client: httpx.AsyncClient,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    smtp_server: SmtpTestServer,
) -> None:
    env = worker_env(
        settings,
        smtp_server,
        WORKER_HEARTBEAT_FILE="",
        WORKER_METRICS_PORT="0",
        LOG_FORMAT="json",
    )
    supervisor = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mailroom",
        "worker",
        "--processes",
        "2",
        "--concurrency",
        "4",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:

        async def children() -> set[int]:
            return _children(supervisor.pid)

        first = await eventually(children, lambda c: len(c) == 2, timeout=20, what="2 children")
        for i in range(10):
            body = {"to": f"user{i}@example.com", "subject": "s", "text": "t"}
            assert (await client.post("/send", json=body)).status_code == 202
        await eventually(lambda: _sent(sessions), lambda n: n == 10, timeout=30, what="sent")

        # A child killed outright is replaced by a new one.
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        replaced = await eventually(
            children,
            lambda c: len(c) == 2 and victim not in c,
            timeout=20,
            what="a replacement child",
        )

        supervisor.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(supervisor.communicate(), timeout=40)
    finally:
        if supervisor.returncode is None:
            supervisor.kill()
            await supervisor.wait()
    assert supervisor.returncode == 0, stderr.decode()[-2000:]
    assert b"worker.process_exited" in stderr
    # The supervisor waits for (and reaps) every child before it exits.
    assert not [pid for pid in replaced if _exists(pid)]
