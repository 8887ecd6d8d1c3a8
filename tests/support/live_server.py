"""The API served for real: uvicorn on a free local port, in a thread with its own event loop.

For tests whose client is not in this process (schemathesis, newman): the app gets its own
connections to PostgreSQL and Redis, so it must be given settings for the test's database
and Redis namespace.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn

from mailroom.api.app import create_app
from mailroom.api.server import server_options
from mailroom.settings import Settings
from tests.support.waiting import eventually


class LiveServer:
    """uvicorn serving a Mailroom app from a thread: its own loop, its own connections."""

    def __init__(self, app_settings: Settings) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        port = self._socket.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        # Served as `mailroom api` serves it (its connection deadlines and cap included);
        # log_config=None among those options leaves the process's logging alone.
        config = uvicorn.Config(
            create_app(app_settings), lifespan="on", **server_options(app_settings)
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=15)
        self._socket.close()
        assert not self._thread.is_alive(), "the uvicorn thread did not stop"


@asynccontextmanager
async def serving(app_settings: Settings, *, timeout: float = 20) -> AsyncIterator[LiveServer]:
    """Start a LiveServer, wait until it accepts requests, and stop it afterwards."""
    server = LiveServer(app_settings)
    server.start()
    try:

        async def state() -> tuple[bool, bool]:
            return server.server.started, server.alive

        started, alive = await eventually(
            state, lambda s: s[0] or not s[1], timeout=timeout, what="uvicorn to start"
        )
        assert started and alive, "uvicorn failed to start"
        yield server
    finally:
        server.stop()
