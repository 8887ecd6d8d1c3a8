"""Sends emails through POST /send at bounded concurrency and records every answer."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

SEND_CONCURRENCY = 32
MAX_TRIES = 10  # per email, when 503s are retried
KEEPALIVE_EXPIRY = 2.0  # seconds; below uvicorn's 5 s keep-alive timeout


def _retry_after(response: httpx.Response) -> float:
    """The answer's Retry-After in seconds (1 if absent or not a number), at most 30."""
    try:
        return min(max(float(response.headers.get("Retry-After", "1")), 0.0), 30.0)
    except ValueError:
        return 1.0


@dataclass
class LoadResult:
    accepted: dict[str, str] = field(default_factory=dict)  # email id -> subject
    statuses: Counter[int] = field(default_factory=Counter)  # non-202 answers; 0 = no answer
    retried: int = 0  # 503 answers the client waited out (Retry-After) and sent again
    errors: list[str] = field(default_factory=list)
    finished_at: float = 0.0

    @property
    def answered(self) -> int:
        return len(self.accepted) + sum(self.statuses.values())

    @property
    def server_errors(self) -> int:
        """5xx other than 503, and requests that got no answer at all."""
        return sum(
            n for code, n in self.statuses.items() if code == 0 or (code >= 500 and code != 503)
        )


async def send_emails(
    result: LoadResult,
    api_url: str,
    api_key: str,
    n: int,
    subject_for: Callable[[int], str],
    concurrency: int = SEND_CONCURRENCY,
    retry_503: bool = False,
) -> LoadResult:
    """POST every email; with `retry_503`, a 503 is retried after its Retry-After (bounded).

    Every non-202 answer is counted in `statuses`, retried or not; only 202s are accepted.
    """
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)
    headers = {"Authorization": f"Bearer {api_key}"}
    # Drop idle connections before uvicorn does (its keep-alive timeout is 5 s): a client that
    # waits out Retry-After: 5 and reuses its connection would otherwise race the server's
    # close and get a ReadError for a request the API never saw.
    limits = httpx.Limits(
        max_connections=concurrency,
        max_keepalive_connections=concurrency,
        keepalive_expiry=KEEPALIVE_EXPIRY,
    )
    async with httpx.AsyncClient(
        base_url=api_url, headers=headers, limits=limits, timeout=30.0
    ) as client:

        async def post(body: dict[str, str]) -> httpx.Response | None:
            """One email, retried on 503 if asked; None when no answer came at all."""
            for tries in range(1, MAX_TRIES + 1):
                try:
                    response = await client.post("/send", json=body)
                except httpx.HTTPError as exc:
                    result.statuses[0] += 1
                    when = time.strftime("%H:%M:%S")
                    result.errors.append(f"{type(exc).__name__}: {exc} (try {tries}, {when})")
                    return None
                if not (retry_503 and response.status_code == 503 and tries < MAX_TRIES):
                    return response
                result.statuses[503] += 1
                result.retried += 1
                await asyncio.sleep(_retry_after(response))
            raise AssertionError("unreachable")

        async def sender() -> None:
            while True:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                subject = subject_for(i)
                body = {"to": f"user{i}@example.com", "subject": subject, "text": f"chaos {i}"}
                response = await post(body)
                if response is None:
                    continue
                if response.status_code == 202:
                    result.accepted[response.json()["id"]] = subject
                else:
                    result.statuses[response.status_code] += 1
                    if response.status_code >= 500 and len(result.errors) < 20:
                        result.errors.append(f"{response.status_code}: {response.text[:200]}")

        await asyncio.gather(*(sender() for _ in range(concurrency)))
    result.finished_at = time.time()
    return result
