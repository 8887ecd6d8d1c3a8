"""Slow clients and the connection cap, against uvicorn serving as `mailroom api` does."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import make_key, make_settings
from tests.support.live_server import LiveServer, serving
from tests.support.waiting import eventually

DEADLINE = 0.5  # seconds, for the head and for the body


@pytest.fixture(scope="module")
async def strict(database_url: str, namespace: str) -> AsyncIterator[LiveServer]:
    settings = make_settings(
        database_url,
        namespace,
        request_header_timeout=DEADLINE,
        request_body_timeout=DEADLINE,
    )
    async with serving(settings) as server:
        yield server


@pytest.fixture(scope="module")
async def capped(database_url: str, namespace: str) -> AsyncIterator[LiveServer]:
    async with serving(make_settings(database_url, namespace, max_connections=3)) as server:
        yield server


async def _connect(server: LiveServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = server.base_url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


async def _trickle(writer: asyncio.StreamWriter, data: bytes) -> None:
    """One byte every 50 ms, until the server closes the connection (or 10 s pass)."""
    for byte in data[:200]:
        writer.write(bytes([byte]))
        try:
            await writer.drain()
        except ConnectionError:
            return
        await asyncio.sleep(0.05)


async def _closed_with(reader: asyncio.StreamReader) -> tuple[int | None, bytes, float]:
    """What the server sent until it closed the connection, and when it closed it."""
    started = time.monotonic()
    async with asyncio.timeout(10):
        try:
            received = await reader.read()
        except ConnectionError:
            received = b""
    status = int(received.split()[1]) if received.startswith(b"HTTP/1.1") else None
    return status, received.partition(b"\r\n\r\n")[2], time.monotonic() - started


async def test_a_connection_that_sends_nothing_is_closed_with_408(strict: LiveServer) -> None:
    reader, writer = await _connect(strict)
    try:
        status, body, elapsed = await _closed_with(reader)
    finally:
        writer.close()
    assert status == 408
    assert json.loads(body)["error"]["code"] == "request_timeout"
    assert elapsed < 5


async def test_headers_trickled_a_byte_at_a_time_are_cut_off_with_408(
    strict: LiveServer,
) -> None:
    reader, writer = await _connect(strict)
    head = b"POST /send HTTP/1.1\r\nHost: mailroom.test\r\n" + b"X-Padding: " + b"a" * 400
    trickling = asyncio.create_task(_trickle(writer, head))
    try:
        status, body, elapsed = await _closed_with(reader)
    finally:
        trickling.cancel()
        writer.close()
    assert status == 408, body
    assert "headers" in json.loads(body)["error"]["message"]
    assert elapsed < 5  # it used to stay open for as long as the client kept sending


async def test_a_body_trickled_a_byte_at_a_time_is_cut_off_with_408(
    strict: LiveServer, sessions: async_sessionmaker[AsyncSession]
) -> None:
    key = await make_key(sessions)
    reader, writer = await _connect(strict)
    writer.write(
        b"POST /send HTTP/1.1\r\nHost: mailroom.test\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + key.encode() + b"\r\nContent-Length: 1000\r\n\r\n"
    )
    trickling = asyncio.create_task(_trickle(writer, b" " * 1000))
    try:
        status, body, elapsed = await _closed_with(reader)
    finally:
        trickling.cancel()
        writer.close()
    assert status == 408, body
    assert "body" in json.loads(body)["error"]["message"]
    assert elapsed < 5


async def test_prompt_clients_are_unaffected_and_idle_keep_alive_is_not_a_slow_request(
    strict: LiveServer, sessions: async_sessionmaker[AsyncSession]
) -> None:
    key = await make_key(sessions)
    async with httpx.AsyncClient(base_url=strict.base_url, timeout=10) as client:
        first = await client.post(
            "/send",
            json={"to": "jane@example.com", "subject": "Hi", "text": "x" * 100_000},
            headers={"Authorization": f"Bearer {key}"},
        )
        # Idle between requests longer than the deadlines: keep-alive's business, not theirs.
        await asyncio.sleep(DEADLINE * 3)
        second = await client.get("/health")
    assert first.status_code == 202, first.text
    assert second.status_code == 200


async def test_a_request_over_the_connection_cap_gets_503_at_once(capped: LiveServer) -> None:
    idle = [await _connect(capped) for _ in range(3)]

    async def connections() -> int:
        return len(capped.server.server_state.connections)

    await eventually(connections, lambda n: n >= 3, what="three connections open")
    try:
        async with httpx.AsyncClient(base_url=capped.base_url, timeout=5) as client:
            refused = await client.get("/health")
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert refused.headers["connection"] == "close"
        assert refused.json()["error"]["code"] == "service_unavailable"
    finally:
        for _, writer in idle:
            writer.close()

    async def health() -> int:
        async with httpx.AsyncClient(base_url=capped.base_url, timeout=5) as client:
            return (await client.get("/health")).status_code

    await eventually(health, lambda status: status == 200, what="room again")
