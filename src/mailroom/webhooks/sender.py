"""Sending one webhook request: the small interface, and its httpx implementation.

One ``HttpSender`` (one connection pool) per worker process. A request never takes
longer than the timeout, whatever the receiver does: redirects are not followed, at most
the first ``MAX_RESPONSE_BODY`` bytes of the reply are read (a huge or never-ending body
is cut off), and every failure (refused address, DNS, TLS, connection, timeout) comes
back as an outcome with a clear error rather than an exception.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass
from typing import Protocol

import httpx

from mailroom.webhooks.schedule import parse_retry_after
from mailroom.webhooks.ssrf import RefusedDestination, check_url, refused_address, resolve

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
        self._client = httpx.AsyncClient(
            follow_redirects=False,
            timeout=timeout,
            verify=verify,
            trust_env=False,  # never through a proxy from the environment
            limits=httpx.Limits(max_connections=max_connections),
            headers={"user-agent": USER_AGENT},
        )

    async def send(self, url: str, headers: dict[str, str], body: bytes) -> SendOutcome:
        started = time.monotonic()

        def outcome(
            code: int | None, text: str | None, error: str | None, retry_after: float | None = None
        ) -> SendOutcome:
            elapsed = round((time.monotonic() - started) * 1000)
            return SendOutcome(code, text, error, elapsed, retry_after)

        try:
            async with asyncio.timeout(self._timeout):
                request = await self._pinned(url, headers, body)
                response = await self._client.send(request, stream=True)
                try:
                    kept = await _first_bytes(response)
                finally:
                    await response.aclose()
        except RefusedDestination as exc:
            return outcome(None, None, f"Refused destination: {exc}")
        except TimeoutError:
            return outcome(None, None, f"Timed out after {self._timeout:g} s")
        except httpx.TimeoutException:
            return outcome(None, None, f"Timed out after {self._timeout:g} s")
        except OSError as exc:  # DNS
            return outcome(None, None, f"Could not resolve the host: {exc}")
        except httpx.HTTPError as exc:
            return outcome(None, None, _describe(exc))
        retry_after = None
        if response.status_code in (429, 502, 503, 504):
            retry_after = parse_retry_after(response.headers.get("retry-after"))
        text = kept.decode("utf-8", errors="replace") if kept else None
        return outcome(response.status_code, text, None, retry_after)

    async def _pinned(self, url: str, headers: dict[str, str], body: bytes) -> httpx.Request:
        """The request, aimed at an address checked now (the one connected to)."""
        parts = check_url(url, allow_http=self._allow_http, allow_private=self._allow_private)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses = await resolve(host, port)
        if not addresses:
            raise RefusedDestination(f"the host {host!r} has no address")
        for address in addresses:
            reason = refused_address(address, allow_private=self._allow_private)
            if reason is not None:
                raise RefusedDestination(reason)
        address = addresses[0]
        target = httpx.URL(url).copy_with(
            host=str(address), port=parts.port
        )  # the TLS name and Host header stay the URL's (below)
        request = self._client.build_request(
            "POST",
            target,
            content=body,
            headers={**headers, "content-type": "application/json", "host": parts.netloc},
            extensions={"sni_hostname": host} if parts.scheme == "https" else {},
        )
        return request

    async def aclose(self) -> None:
        await self._client.aclose()


async def _first_bytes(response: httpx.Response) -> bytes:
    """Up to MAX_RESPONSE_BODY bytes as sent (not decompressed): the rest is never read."""
    kept = bytearray()
    async for chunk in response.aiter_raw():
        kept += chunk
        if len(kept) >= MAX_RESPONSE_BODY:
            break
    return bytes(kept[:MAX_RESPONSE_BODY])


def _describe(exc: httpx.HTTPError) -> str:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            return f"TLS error: {cause}"
        cause = cause.__cause__ or cause.__context__
    text = str(exc) or type(exc).__name__
    if "CERTIFICATE_VERIFY_FAILED" in text or "SSL" in text:
        return f"TLS error: {text}"
    return f"Connection failed: {text}"
