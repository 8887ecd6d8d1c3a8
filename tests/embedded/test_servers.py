"""The embedded pair in this process: real servers, one user per directory, nothing left."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as redis

from mailroom.embedded.errors import EmbeddedServerError
from mailroom.embedded.ports import answers
from mailroom.embedded.servers import embedded_servers


@pytest.fixture
def home() -> Iterator[Path]:
    # Outside pytest's tmp_path, whose parent pytest keeps at mode 700 (see test_dev_embedded).
    path = Path(tempfile.mkdtemp(prefix="mailroom-embedded-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
async def test_the_pair_serves_holds_its_directory_and_stops_leaving_nothing(
    home: Path,
) -> None:
    with embedded_servers(home, throwaway=True) as servers:
        assert servers.postgres is not None and servers.valkey is not None
        dsn = servers.postgres.url("postgres").replace("+asyncpg", "")
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute("CREATE TABLE kept (value text)")
            await connection.execute("INSERT INTO kept VALUES ('across restarts')")
            version = await connection.fetchval("SHOW server_version")
        finally:
            await connection.close()
        assert str(version).startswith("18.")
        client = redis.Redis.from_url(servers.valkey.url())
        try:
            assert await client.set("key", "value")
            info = await client.info("server")
        finally:
            await client.aclose()
        assert info["process_id"] == servers.valkey.pid

        with (
            pytest.raises(EmbeddedServerError, match=f"pid {os.getpid()}"),
            embedded_servers(home, throwaway=True),
        ):
            pass  # pragma: no cover - the lock is held

        pids = servers.pids
        ports = [servers.postgres.port, servers.valkey.port]
    assert len(pids) == 2
    # Each stop waited for its process: gone, and its port closed, on the way out.
    assert not any(_running(pid) for pid in pids)
    assert not any(answers("127.0.0.1", port) for port in ports)

    with embedded_servers(home, valkey=False, throwaway=True) as again:
        assert again.postgres is not None and again.valkey is None
        connection = await asyncpg.connect(again.postgres.url("postgres").replace("+asyncpg", ""))
        try:
            assert await connection.fetchval("SELECT value FROM kept") == "across restarts"
        finally:
            await connection.close()
    log = (home / "postgres.log").read_text()
    assert "database system was shut down at" in log
    assert "recovery" not in log
