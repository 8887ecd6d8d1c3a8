"""The worker's heartbeat file, which `mailroom health --worker` reads."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from structlog.testing import capture_logs
from typer.testing import CliRunner

from mailroom.cli import app
from mailroom.health_check import check_heartbeat
from mailroom.settings import Settings, get_settings
from mailroom.worker.runner import heartbeat
from tests.conftest import running_worker
from tests.support.smtp_server import SmtpTestServer
from tests.support.waiting import eventually


def _modified(path: Path) -> float:
    return path.stat().st_mtime if path.exists() else 0.0


def _mtime(path: Path) -> Awaitable[float]:
    return asyncio.to_thread(_modified, path)


async def test_it_is_touched_while_the_consumer_runs_and_no_longer(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat"
    consumer: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    beating = asyncio.create_task(heartbeat(path, consumer, interval=0.01))

    await eventually(lambda: _mtime(path), lambda t: t > 0, what="the first beat")
    os.utime(path, (1.0, 1.0))
    await eventually(lambda: _mtime(path), lambda t: t > 1.0, what="the next beat")

    consumer.set_result(None)  # the job loop ended: the beats stop
    await asyncio.wait_for(beating, timeout=5)
    os.utime(path, (1.0, 1.0))
    await asyncio.sleep(0.05)
    assert path.stat().st_mtime == 1.0


async def test_a_file_it_cannot_write_is_logged_not_raised(tmp_path: Path) -> None:
    consumer: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    with capture_logs() as logs:
        await asyncio.wait_for(heartbeat(tmp_path / "no-such-dir" / "beat", consumer), 5)
    assert [entry["event"] for entry in logs] == ["worker.heartbeat_failed"]
    consumer.cancel()


@pytest.mark.usefixtures("clean")
async def test_a_running_worker_is_healthy_and_a_stopped_one_is_not(
    settings_factory: Callable[..., Settings],
    smtp_server: SmtpTestServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "worker.heartbeat"
    settings = settings_factory(worker_heartbeat_file=path)
    monkeypatch.setenv("WORKER_HEARTBEAT_FILE", str(path))
    get_settings.cache_clear()
    runner = CliRunner()
    try:
        async with running_worker(settings, smtp_server):
            await eventually(lambda: _mtime(path), lambda t: t > 0, what="the heartbeat file")
            assert check_heartbeat(path) is None
            result = runner.invoke(app, ["health", "--worker"])
            assert result.exit_code == 0, result.output
        assert not path.exists()
        assert runner.invoke(app, ["health", "--worker"]).exit_code == 1
    finally:
        get_settings.cache_clear()
