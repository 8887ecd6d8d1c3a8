"""Sending one webhook request: the small interface, and its aiohttp implementation.

One ``HttpSender`` (one connection pool) per worker process. A request never takes
longer than the timeout, whatever the receiver does: redirects are not followed, at most
the first ``MAX_RESPONSE_BODY`` bytes of the reply are read (a huge or never-ending body
is cut off), and every failure (refused address, DNS, TLS, connection, timeout) comes
back as an outcome with a clear error rather than an exception.

aiohttp rather than httpx: here httpx 0.28 spends about 0.5 ms of CPU on each request,
and 2 ms with 40 requests in flight (its pool scans every connection for each request),
against 0.1 ms for aiohttp at any concurrency (docs/design.md, "Webhooks"). A worker
sends two events per email, so the client's cost decides whether webhooks keep up.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Protocol

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from mailroom.webhooks.schedule import parse_retry_after
from mailroom.webhooks.ssrf import RefusedDestination, check_url, literal_address, refused_address

MAX_RESPONSE_BODY = 4096
USER_AGENT = "Mailroom-Webhooks/1"


@dataclass(frozen=True)
class SendOutcome:
    status_code: int | None  # None: no HTTP answer (see error)
    body: str | None  # the first MAX_RESPONSE_BODY bytes of the answer
    error: str | None
    duration_ms: int
    retry_after: float | None = None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class WebhookSender(Protocol):
    async def send(self, url: str, headers: dict[str, str], body: bytes) -> SendOutcome: ...

    async def aclose(self) -> None: ...


class CheckedResolver(AbstractResolver):
    """The system resolver, refusing a host with any address a webhook must not reach.

    The connection pool only ever connects to addresses this returned, so the address
    checked is the address connected to, at every new connection (a cached lookup was
    checked when it was made)."""

    def __init__(self, *, allow_private: bool) -> None:
        self._allow_private = allow_private
        self._resolver = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._resolver.resolve(host, port, family)
        if not found:
            raise RefusedDestination(f"the host {host!r} has no address")
        for result in found:
            address = literal_address(result["host"])
            reason = (
                f"the host {host!r} resolved to {result['host']!r}"
                if address is None
                else refused_address(address, allow_private=self._allow_private)
            )
            if reason is not None:
                raise RefusedDestination(reason)
        return found

    async def close(self) -> None:
        await self._resolver.close()


class HttpSender:
    def __init__(
        self,
        *,
        timeout: float,
        allow_http: bool,
        allow_private: bool,
        max_connections: int = 100,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self._timeout = timeout
        self._allow_http = allow_http
        self._allow_private = allow_private
        self._max_connections = max_connections
        self._verify = verify
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Built on first use: aiohttp binds a session to the running event loop.
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                limit_per_host=0,
                resolver=CheckedResolver(allow_private=self._allow_private),
                ssl=self._verify,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                headers={"user-agent": USER_AGENT},
                auto_decompress=False,  # the reply is kept as sent, never inflated
                trust_env=False,  # never through a proxy from the environment
            )
        return self._session

    async def send(self, url: str, headers: dict[str, str], body: bytes) -> SendOutcome:
        started = time.monotonic()

        def outcome(
            code: int | None, text: str | None, error: str | None, retry_after: float | None = None
        ) -> SendOutcome:
            elapsed = round((time.monotonic() - started) * 1000)
            return SendOutcome(code, text, error, elapsed, retry_after)

        try:
            self._check(url)
            async with asyncio.timeout(self._timeout):
                async with self._client().post(
                    url,
                    data=body,
                    headers={**headers, "content-type": "application/json"},
                    allow_redirects=False,
                ) as response:
                    status, kept = response.status, await _first_bytes(response)
                    retry_after_header = response.headers.get("retry-after")
        except RefusedDestination as exc:
            return outcome(None, None, f"Refused destination: {exc}")
        except TimeoutError:
            return outcome(None, None, f"Timed out after {self._timeout:g} s")
        except aiohttp.ClientConnectorDNSError as exc:
            return outcome(None, None, f"Could not resolve the host: {exc.os_error}")
        except aiohttp.ClientSSLError as exc:
            return outcome(None, None, f"TLS error: {exc}")
        except (aiohttp.ClientError, OSError) as exc:
            return outcome(None, None, _describe(exc, tls=url.lower().startswith("https:")))
        retry_after = None
        if status in (429, 502, 503, 504):
            retry_after = parse_retry_after(retry_after_header)
        text = kept.decode("utf-8", errors="replace") if kept else None
        return outcome(status, text, None, retry_after)

    def _check(self, url: str) -> None:
        """The URL's form, and its host when it is an address: the resolver never sees
        an address (aiohttp connects to it as it is), so it is checked here."""
        parts = check_url(url, allow_http=self._allow_http, allow_private=self._allow_private)
        address = literal_address(parts.hostname or "")
        if address is not None:
            reason = refused_address(address, allow_private=self._allow_private)
            if reason is not None:
                raise RefusedDestination(reason)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


async def _first_bytes(response: aiohttp.ClientResponse) -> bytes:
    """Up to MAX_RESPONSE_BODY bytes as sent; a longer reply is cut off and its connection
    closed (the rest is never read)."""
    kept = bytearray()
    while len(kept) < MAX_RESPONSE_BODY:
        chunk = await response.content.read(MAX_RESPONSE_BODY - len(kept))
        if not chunk:
            return bytes(kept)
        kept += chunk
    if not response.content.at_eof():
        response.close()
    return bytes(kept)


def _describe(exc: BaseException, *, tls: bool) -> str:
    if (
        tls
        and isinstance(exc, aiohttp.ClientConnectorError)
        and isinstance(exc.os_error, ConnectionResetError | EOFError)
    ):
        # Connected, then cut off before the handshake finished: not a TLS server.
        return f"TLS error: the handshake failed ({type(exc.os_error).__name__})"
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            return f"TLS error: {cause}"
        cause = cause.__cause__ or cause.__context__
    text = str(exc) or type(exc).__name__
    if "CERTIFICATE_VERIFY_FAILED" in text or "SSL" in text:
        return f"TLS error: {text}"
    return f"Connection failed: {text}"
