"""The dashboard's pages against the logs run's large log: each page's server response time.

Signs in as a browser does (the form, then the session cookie), then times each page as
bench/logs.py times the API's queries. The JavaScript shipped is measured too: its size
compressed (gzip -9), as a browser fetches it from a server that compresses.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import re
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path

import httpx

from bench.logs import QueryTiming
from bench.rss import descendants

TimeIt = Callable[[httpx.AsyncClient, QueryTiming], Awaitable[None]]


async def _sign_in(client: httpx.AsyncClient, key: str) -> None:
    form = await client.get("/dashboard/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    if token is None:
        raise RuntimeError("the sign-in form has no CSRF token")
    answer = await client.post("/dashboard/login", data={"csrf": token.group(1), "key": key})
    if answer.status_code != 303:
        raise RuntimeError(f"signing in to the dashboard answered {answer.status_code}")


async def dashboard_timings(api_url: str, key: str, time_it: TimeIt) -> list[QueryTiming]:
    async with httpx.AsyncClient(base_url=api_url, timeout=60.0) as client:
        await _sign_in(client, key)
        listing = await client.get("/dashboard/emails?status=failed")
        found = re.search(r'<tr id="e-([0-9a-f-]{36})"', listing.text)
        if found is None:
            raise RuntimeError("the emails page lists no email")
        pages = [
            ("overview, 24 h", "/dashboard?tz=UTC"),
            ("overview, 30 days", "/dashboard?tz=Europe/Berlin&range=30d"),
            ("emails", "/dashboard/emails"),
            ("emails, status=failed", "/dashboard/emails?status=failed"),
            ("emails, to=user-123@…", "/dashboard/emails?to=user-123@example.com"),
            ("emails, subject contains (common)", "/dashboard/emails?subject=receipt"),
            # Matched row by row: a text that (almost) no email has scans the whole log.
            ("emails, subject contains (rare)", "/dashboard/emails?subject=receipt%20%23999999"),
            ("one email", f"/dashboard/emails/{found.group(1)}"),
            ("suppressions", "/dashboard/suppressions"),
            ("suppressions, q=example.com", "/dashboard/suppressions?q=example.com"),
            ("API keys", "/dashboard/keys"),
        ]
        timings = []
        for name, path in pages:
            timing = QueryTiming(name=name, path=path)
            await time_it(client, timing)
            timings.append(timing)
        return timings


def javascript_bytes() -> tuple[int, int]:
    """The dashboard's JavaScript: (bytes, bytes gzip -9 compressed)."""
    static = resources.files("mailroom.api.dashboard").joinpath("static")
    scripts = [f.read_bytes() for f in static.iterdir() if f.name.endswith(".js")]
    raw = b"".join(scripts)
    return len(raw), sum(len(gzip.compress(s, 9)) for s in scripts)


LIVE_STREAMS = 50  # open emails pages, each with its live stream
LIVE_SECONDS = 20.0


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes, in seconds."""
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
    return total / os.sysconf("SC_CLK_TCK")


async def live_cpu_percent(api_url: str, key: str, api_pid: int) -> float:
    """CPU of the API process(es) (percent of one core) while LIVE_STREAMS signed-in
    emails pages hold their live streams open for LIVE_SECONDS, with nothing changing."""
    pids = [api_pid, *descendants(api_pid)]
    async with httpx.AsyncClient(
        base_url=api_url, timeout=httpx.Timeout(60.0, read=None)
    ) as client:
        await _sign_in(client, key)
        page = await client.get("/dashboard/emails")
        after = re.search(r'data-after="([^"]+)"', page.text)
        if after is None:
            raise RuntimeError("the emails page is not live")
        opened = asyncio.Event()
        count = 0

        async def hold() -> None:
            nonlocal count
            async with client.stream(
                "GET", "/dashboard/emails/live", params={"after": after.group(1)}
            ) as stream:
                count += 1
                if count == LIVE_STREAMS:
                    opened.set()
                async for _ in stream.aiter_raw():
                    pass

        tasks = [asyncio.create_task(hold()) for _ in range(LIVE_STREAMS)]
        try:
            await asyncio.wait_for(opened.wait(), 30)
            await asyncio.sleep(2)  # every stream past its first look
            began, cpu0 = time.monotonic(), _cpu_seconds(pids)
            await asyncio.sleep(LIVE_SECONDS)
            used = _cpu_seconds(pids) - cpu0
            return 100 * used / (time.monotonic() - began)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
