"""Multi-process mode: a scrape answered by any one process reports every process's totals.

prometheus_client picks its mode when it is first imported, so each "process" here is a
real Python process: first two that record requests directly, then `mailroom api
--processes 2` itself.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.auth.scopes import Scope
from mailroom.metrics.registry import (
    API_REGISTRY,
    MULTIPROC_DIR_ENV,
    multiprocess_dir,
    multiprocess_directory,
    render,
)
from mailroom.settings import Settings
from tests.conftest import make_key
from tests.metrics.scrape import free_port, value
from tests.support.waiting import eventually

# One API process's share of the traffic: `n` accepted sends, one 404 by template.
_RECORD = textwrap.dedent(
    """
    import sys
    from types import SimpleNamespace
    from mailroom.api.context import request_context
    from mailroom.api.request_metrics import RequestMetrics

    def request(method, route, status):
        scope = {"method": method, "route": SimpleNamespace(path=route)}
        if status == 202:
            request_context(scope).emails_accepted = 1  # as the route notes it
        observed = RequestMetrics(scope)
        observed.sent({"type": "http.response.start", "status": status, "headers": []})
        observed.finished(0.01)

    for _ in range(int(sys.argv[1])):
        request("POST", "/send", 202)
    request("GET", "/emails/{email_id}", 404)
    """
)


def _record_in_a_process(directory: Path, sends: int) -> None:
    subprocess.run(
        [sys.executable, "-c", _RECORD, str(sends)],
        env={**os.environ, MULTIPROC_DIR_ENV: str(directory)},
        check=True,
        timeout=60,
    )


@pytest.mark.slow
def test_a_scrape_adds_up_every_process(tmp_path: Path) -> None:
    _record_in_a_process(tmp_path, 3)
    _record_in_a_process(tmp_path, 2)
    assert len(list(tmp_path.glob("counter_*.db"))) == 2

    text = render(API_REGISTRY, multiprocess_path=str(tmp_path)).decode()

    sent = {"method": "POST", "route": "/send", "status": "202"}
    assert value(text, "mailroom_http_requests_total", **sent) == 5
    assert value(text, "mailroom_http_request_duration_seconds_count", **sent) == 5
    assert value(text, "mailroom_emails_accepted_total", endpoint="single") == 5
    assert value(text, "mailroom_emails_accepted_total", endpoint="batch") == 0
    not_found = {"method": "GET", "route": "/emails/{email_id}", "status": "404"}
    assert value(text, "mailroom_http_requests_total", **not_found) == 2
    # Only the files count: this process's own (in-memory) counters are not added.
    assert "process_cpu_seconds_total" not in text


def test_the_multiprocess_directory_is_fresh_and_removed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MULTIPROC_DIR_ENV, raising=False)
    assert multiprocess_dir() is None
    with multiprocess_directory() as first:
        assert multiprocess_dir() == first and Path(first).is_dir()
        assert not any(Path(first).iterdir())
        with multiprocess_directory() as second:
            assert second != first and multiprocess_dir() == second
        assert multiprocess_dir() == first and not Path(second).exists()
    assert multiprocess_dir() is None and not Path(first).exists()


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found.update(int(p) for p in (task / "children").read_text().split())
    return found


def _exists(path: str | None) -> bool:
    return path is not None and Path(path).exists()


def _shared_metrics_files(parent: int) -> tuple[str | None, int]:
    """The metrics directory the children of ``parent`` share (None unless exactly one),
    and how many of them have a counter file there."""
    children = _children(parent)
    directories = {d for pid in children if (d := _metrics_dir_of(pid)) is not None}
    if len(directories) != 1:
        return None, 0
    directory = directories.pop()
    return directory, sum((Path(directory) / f"counter_{pid}.db").exists() for pid in children)


def _metrics_dir_of(pid: int) -> str | None:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for entry in environ:
        name, _, value_ = entry.partition(b"=")
        if name.decode() == MULTIPROC_DIR_ENV:
            return value_.decode()
    return None


@pytest.mark.timeout(90)
@pytest.mark.usefixtures("clean")
@pytest.mark.slow
async def test_mailroom_api_with_two_processes_reports_totals(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    port = free_port()
    key = await make_key(sessions, (Scope.METRICS_READ,))
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "QUEUE_PREFIX": settings.queue_prefix,
        "QUEUE_NAME": settings.queue_name,
        "LOG_LEVEL": "WARNING",
    }
    env.pop(MULTIPROC_DIR_ENV, None)
    api = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "mailroom", "api", "--processes", "2", "--port", str(port)),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        async def files() -> tuple[str | None, int]:
            return _shared_metrics_files(api.pid)

        # Each API process creates its counter file as it imports the app.
        directory, _ = await eventually(
            files,
            lambda found: found[0] is not None and found[1] == 2,
            timeout=30,
            what="two API processes sharing one metrics directory",
        )
        assert directory is not None and directory != os.environ.get(MULTIPROC_DIR_ENV)

        async def ready() -> int:
            try:
                async with httpx.AsyncClient() as http:
                    return (await http.get(f"{base}/ready")).status_code
            except httpx.TransportError:
                return 0

        await eventually(ready, lambda status: status != 0, timeout=30, what="the API")

        # A new connection for every request, so that both processes take some.
        for _ in range(20):
            async with httpx.AsyncClient() as http:
                assert (await http.get(f"{base}/health")).status_code == 200
        for _ in range(4):
            async with httpx.AsyncClient() as http:
                response = await http.get(
                    f"{base}/metrics", headers={"Authorization": f"Bearer {key}"}
                )
            assert response.status_code == 200, response.text
            health = {"method": "GET", "route": "/health", "status": "200"}
            assert value(response.text, "mailroom_http_requests_total", **health) == 20
    finally:
        if api.returncode is None:
            api.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(api.wait(), 20)
            except TimeoutError:
                api.kill()
                await api.wait()
    assert not _exists(directory), "the metrics directory outlived the API"
