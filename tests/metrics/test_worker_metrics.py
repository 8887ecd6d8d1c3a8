"""The worker's metrics endpoint, scraped over HTTP while a real worker delivers."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import time
from typing import Any

import httpx
import pytest

from mailroom.metrics.server import serve_worker_metrics
from mailroom.settings import Settings
from mailroom.transport.memory import MemoryTransport
from mailroom.worker.runner import DeliveryWorker
from tests.conftest import smtp_transport_for
from tests.metrics.scrape import free_port, value
from tests.support.processes import worker_env
from tests.support.smtp_server import SmtpTestServer
from tests.support.waiting import eventually

pytestmark = pytest.mark.usefixtures("clean")

REJECTED = "nobody@example.com"


async def _scrape(port: int) -> str:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://127.0.0.1:{port}/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


async def _status(client: httpx.AsyncClient, email_id: str) -> str:
    response = await client.get(f"/emails/{email_id}")
    assert response.status_code == 200, response.text
    status: str = response.json()["status"]
    return status


async def _until_status(client: httpx.AsyncClient, email_id: str, final: str) -> None:
    async def status() -> str:
        return await _status(client, email_id)

    await eventually(status, lambda s: s == final, what=f"{email_id} {final}")


async def test_a_worker_serves_its_delivery_metrics(
    client: httpx.AsyncClient,
    settings_factory: Any,
    smtp_server: SmtpTestServer,
) -> None:
    smtp_server.handler.rcpt_replies[REJECTED] = "550 5.1.1 No such user here"
    port = free_port()
    settings: Settings = settings_factory(worker_metrics_port=port)
    transport = smtp_transport_for(smtp_server, timeout=settings.smtp_timeout)
    worker = DeliveryWorker(settings, transport=transport, grace_period=5)
    await worker.start()
    try:
        before = await _scrape(port)
        assert value(before, "mailroom_smtp_pool_open_connections") == 0
        began = time.monotonic()
        ids = {}
        for to in ("jane@example.com", REJECTED):
            response = await client.post("/send", json={"to": to, "subject": "s", "text": "t"})
            assert response.status_code == 202, response.text
            ids[to] = response.json()["id"]
        for to, final in (("jane@example.com", "sent"), (REJECTED, "failed")):
            await _until_status(client, ids[to], final)
        elapsed = time.monotonic() - began
        after = await _scrape(port)
        open_now = transport.open_connections
    finally:
        await worker.stop()

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("mailroom_delivery_attempts_total", outcome="accepted") == 1
    assert delta("mailroom_delivery_attempts_total", outcome="permanent") == 1
    for outcome in ("transient", "unknown", "interrupted"):
        assert delta("mailroom_delivery_attempts_total", outcome=outcome) == 0
    assert delta("mailroom_emails_sent_total") == 1
    assert delta("mailroom_emails_failed_total", error_class="5xx") == 1
    for error_class in ("4xx", "connection", "config", "local", "unknown"):
        assert delta("mailroom_emails_failed_total", error_class=error_class) == 0
    # One sent email: accepted → sent, within the time the test took.
    assert delta("mailroom_delivery_latency_seconds_count") == 1
    assert 0 < delta("mailroom_delivery_latency_seconds_sum") <= elapsed
    assert delta("mailroom_delivery_latency_seconds_bucket", le="+Inf") == 1
    # The pool keeps its connections between emails (a refused RCPT does not end one).
    assert open_now >= 1
    assert value(after, "mailroom_smtp_pool_open_connections") == open_now
    # Only the worker's metrics: the API's are the API's.
    assert "mailroom_http_requests_total" not in after
    assert "mailroom_emails_accepted_total" not in after
    # Stopped with the worker.
    with pytest.raises(httpx.ConnectError):
        await _scrape(port)


async def test_port_zero_serves_nothing() -> None:
    assert serve_worker_metrics("127.0.0.1", 0, MemoryTransport()) is None


async def test_a_busy_port_leaves_the_worker_without_metrics_rather_than_down(
    settings_factory: Any, smtp_server: SmtpTestServer
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert serve_worker_metrics("127.0.0.1", port, MemoryTransport()) is None
        settings: Settings = settings_factory(worker_metrics_port=port)
        transport = smtp_transport_for(smtp_server)
        async with DeliveryWorker(settings, transport=transport, grace_period=5):
            pass  # started and stopped normally


async def test_a_transport_without_a_pool_has_no_pool_gauge() -> None:
    port = free_port()
    server = serve_worker_metrics("127.0.0.1", port, MemoryTransport())
    assert server is not None and server.port == port
    try:
        text = await _scrape(port)
    finally:
        await server.stop()
    assert "mailroom_smtp_pool_open_connections" not in text
    assert "# TYPE mailroom_delivery_attempts_total counter" in text


def _two_free_ports() -> int:
    """A port whose next one is free too."""
    for _ in range(50):
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no two consecutive free ports")


@pytest.mark.timeout(90)
@pytest.mark.slow
async def test_worker_processes_each_serve_metrics_on_a_port_of_their_own(
    settings: Settings, smtp_server: SmtpTestServer
) -> None:
    port = _two_free_ports()
    env = worker_env(
        settings,
        smtp_server,
        WORKER_HEARTBEAT_FILE="",
        WORKER_METRICS_PORT=str(port),
        LOG_LEVEL="WARNING",
    )
    supervisor = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "mailroom", "worker", "--processes", "2"),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:

        async def serving(at: int) -> bool:
            try:
                text = await _scrape(at)
            except httpx.TransportError:
                return False
            return "# TYPE mailroom_delivery_attempts_total counter" in text

        async def both() -> bool:
            return await serving(port) and await serving(port + 1)

        await eventually(both, bool, timeout=30, what=f"metrics on ports {port} and {port + 1}")
        supervisor.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(supervisor.communicate(), timeout=40)
    finally:
        if supervisor.returncode is None:
            supervisor.kill()
            await supervisor.wait()
    assert supervisor.returncode == 0, stderr.decode()[-2000:]
    assert b"worker.metrics_unavailable" not in stderr
