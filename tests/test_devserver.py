"""`mailroom dev` as a real process, stopped as a terminal stops it: a signal to its group."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.emails.models import Email
from mailroom.settings import Settings
from tests.support.ports import free_port
from tests.support.processes import worker_env
from tests.support.smtp_server import SmtpTestServer
from tests.support.waiting import eventually

pytestmark = [pytest.mark.usefixtures("clean"), pytest.mark.slow]


async def _start_dev(env: dict[str, str], cwd: Path, *, port: int) -> asyncio.subprocess.Process:
    # A session (and so a process group) of its own, as a terminal gives a foreground job.
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mailroom",
        "dev",
        "--port",
        str(port),
        "--smtp-port",
        str(free_port()),
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )


async def _answers(url: str) -> bool:
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            return (await client.get(url)).status_code == 200
    except httpx.TransportError:
        return False


async def _statuses(sessions: async_sessionmaker[AsyncSession]) -> list[str]:
    async with sessions() as session:
        return list((await session.execute(select(Email.status))).scalars())


async def test_one_sigint_to_the_group_stops_dev_after_its_delivery_with_exit_0(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    smtp_server: SmtpTestServer,
    api_key: str,
    tmp_path: Path,
) -> None:
    smtp_server.handler.data_delay = 2.0  # the delivery is in flight when Ctrl-C lands
    port = free_port()
    env = worker_env(settings, smtp_server, LOG_FORMAT="json")
    dev = await _start_dev(env, tmp_path, port=port)
    base = f"http://127.0.0.1:{port}"
    try:
        await eventually(
            lambda: _answers(f"{base}/health"), bool, timeout=60, what="mailroom dev to serve"
        )
        async with httpx.AsyncClient(base_url=base) as client:
            body = {"to": "jane@example.com", "subject": "Hello", "text": "It works."}
            headers = {"Authorization": f"Bearer {api_key}"}
            response = await client.post("/send", json=body, headers=headers)
            assert response.status_code == 202, response.text

        async def transactions() -> int:
            return smtp_server.handler.transactions

        await eventually(transactions, lambda n: n == 1, timeout=30, what="DATA to start")
        os.killpg(dev.pid, signal.SIGINT)
        output, _ = await asyncio.wait_for(dev.communicate(), timeout=30)
    finally:
        if dev.returncode is None:
            os.killpg(dev.pid, signal.SIGKILL)
            await dev.wait()
    log = output.decode()
    assert dev.returncode == 0, log
    assert '"dev.stopped"' in log, log
    assert "Traceback" not in log, log
    assert await _statuses(sessions) == ["sent"]
    assert len(smtp_server.handler.messages()) == 1


async def test_sigint_before_it_serves_stops_it_with_exit_0(
    settings: Settings, smtp_server: SmtpTestServer, tmp_path: Path
) -> None:
    env = worker_env(settings, smtp_server, LOG_FORMAT="json")
    dev = await _start_dev(env, tmp_path, port=free_port())
    try:
        assert dev.stdout is not None
        # The first line it logs comes once its signal handlers are in place.
        first = await asyncio.wait_for(dev.stdout.readline(), timeout=60)
        assert first, "mailroom dev exited without logging"
        os.killpg(dev.pid, signal.SIGINT)
        rest, _ = await asyncio.wait_for(dev.communicate(), timeout=30)
    finally:
        if dev.returncode is None:
            os.killpg(dev.pid, signal.SIGKILL)
            await dev.wait()
    log = (first + rest).decode()
    assert dev.returncode == 0, log
    assert "Traceback" not in log, log
