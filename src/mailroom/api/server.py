"""How Mailroom runs the API under uvicorn (used by `mailroom api` and `mailroom dev`)."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI


def api_server(app: FastAPI, host: str, port: int) -> uvicorn.Server:
    return uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            # Mailroom logs each request itself (request.completed), through structlog.
            access_log=False,
            log_config=None,
            # X-Forwarded-For is read by Mailroom, and only from TRUSTED_PROXIES; uvicorn
            # would otherwise believe it from 127.0.0.1 and hand clients a way to spoof.
            proxy_headers=False,
            server_header=False,
            # Longer than clients' idle-connection expiry (httpx, urllib3, Node: ≤ 5-60 s), so
            # the server is not the side that closes an idle keep-alive connection just as a
            # client reuses it for a POST (which clients do not retry on their own).
            timeout_keep_alive=75,
        )
    )
