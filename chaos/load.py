"""Sends emails through POST /send at bounded concurrency and records every answer."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

SEND_CONCURRENCY = 32


@dataclass
class LoadResult:
    accepted: dict[str, str] = field(default_factory=dict)  # email id -> subject
    statuses: Counter[int] = field(default_factory=Counter)  # non-202 answers; 0 = no answer
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
) -> LoadResult:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)
    headers = {"Authorization": f"Bearer {api_key}"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=api_url, headers=headers, limits=limits, timeout=30.0
    ) as client:

        async def sender() -> None:
            while True:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                subject = subject_for(i)
                body = {"to": f"user{i}@example.com", "subject": subject, "text": f"chaos {i}"}
                try:
                    response = await client.post("/send", json=body)
                except httpx.HTTPError as exc:
                    result.statuses[0] += 1
                    result.errors.append(f"{type(exc).__name__}: {exc}")
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
