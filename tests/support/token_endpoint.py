"""An OAuth2 token endpoint served for real (uvicorn, from a thread) for the XOAUTH2 tests.

It answers the client-credentials grant (RFC 6749 §4.4) with the next token of its list,
or with the error it is told to give, and keeps every form it was sent.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


@dataclass
class TokenEndpoint:
    tokens: deque[str] = field(default_factory=deque)
    expires_in: Any = 3600
    # (status, body) answered instead of a token, while set.
    failure: tuple[int, dict[str, Any]] | None = None
    requests: list[dict[str, str]] = field(default_factory=list)
    url: str = ""

    async def _token(self, request: Request) -> JSONResponse:
        form = dict(parse_qsl((await request.body()).decode()))
        self.requests.append(form)
        if self.failure is not None:
            status, body = self.failure
            return JSONResponse(body, status_code=status)
        token = self.tokens.popleft() if self.tokens else f"token-{len(self.requests)}"
        return JSONResponse(
            {"access_token": token, "token_type": "Bearer", "expires_in": self.expires_in}
        )

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/oauth2/token", self._token, methods=["POST"])])


@contextmanager
def token_endpoint(*tokens: str, expires_in: Any = 3600) -> Iterator[TokenEndpoint]:
    endpoint = TokenEndpoint(tokens=deque(tokens), expires_in=expires_in)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    endpoint.url = f"http://127.0.0.1:{sock.getsockname()[1]}/oauth2/token"
    server = uvicorn.Server(
        uvicorn.Config(endpoint.app(), log_config=None, access_log=False, lifespan="off")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline, tick = time.monotonic() + 10, threading.Event()
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            tick.wait(0.01)  # uvicorn's own thread sets `started`; nothing to await here
        assert server.started, "the token endpoint did not start"
        yield endpoint
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
