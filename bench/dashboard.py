"""The dashboard's pages against the logs run's large log: each page's server response time.

Next to the log it loads SUPPRESSIONS suppressed addresses and one delivery attempt for
each email that has left the queue, through PROVIDERS in turn (the attempts' insert
trigger keeps the per-provider counters the Providers page reads, as the worker's inserts
do). Signs in as a browser does (the form, then the session cookie), then times each page
as bench/logs.py times the API's queries. The JavaScript shipped is measured too: its size
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
from harness.db import connect

from bench.config import TUNED
from bench.logs import QueryTiming
from bench.rss import descendants

TimeIt = Callable[[httpx.AsyncClient, QueryTiming], Awaitable[None]]

SUPPRESSIONS = 100_000
PROVIDERS = ("primary", "spare")

# Spread over the 90 days of the log, newest last.
LOAD_SUPPRESSIONS = """
INSERT INTO suppressions (project_id, address, reason, created_at)
SELECT (SELECT id FROM projects WHERE name = 'default'),
       'suppressed-' || g || '@example.com', 'hard_bounce',
       now() - interval '90 days' * (1 - g / $1::float8)
FROM generate_series(1, $1::bigint) AS g
"""
# One attempt per email sent or failed, ending as the email did, through the providers in
# turn; in the insert's order (oldest first) as the worker writes them.
LOAD_ATTEMPTS = """
INSERT INTO delivery_attempts (
    email_id, attempt_number, started_at, finished_at, outcome, smtp_code, enhanced_code,
    message, duration_ms, provider
)
SELECT id, 1, updated_at - interval '50 milliseconds', updated_at,
       CASE status WHEN 'sent' THEN 'accepted' ELSE 'permanent' END,
       CASE status WHEN 'sent' THEN 250 ELSE last_error_code END,
       CASE status WHEN 'sent' THEN '2.0.0' ELSE last_error_enhanced END,
       CASE status WHEN 'sent' THEN 'OK' ELSE last_error_message END,
       50,
       ($1::text[])[1 + (row_number() OVER (ORDER BY created_at)) % cardinality($1::text[])]
FROM emails WHERE status IN ('sent', 'failed')
ORDER BY created_at
"""


def settings(smtp_port: int) -> dict[str, str]:
    """The logs run's settings: the tuned ones, with PROVIDERS for the Providers page."""
    urls = [f"smtp://127.0.0.1:{smtp_port}?security=none&name={name}" for name in PROVIDERS]
    return {**TUNED, "SMTP_HOST": "", "SMTP_PORT": "", "SMTP_PROVIDERS": " ".join(urls)}


async def load(db_name: str) -> None:
    """The suppressions and attempts above, then VACUUM ANALYZE (as bench/logs.py's load)."""
    conn = await connect(db_name)
    try:
        await conn.execute(LOAD_SUPPRESSIONS, SUPPRESSIONS)
        await conn.execute(LOAD_ATTEMPTS, list(PROVIDERS))
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


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
            # One email of the million (the trigram index finds it).
            ("emails, subject contains (rare)", "/dashboard/emails?subject=receipt%20%23999999"),
            # Too short for a trigram: matched row by row, newest first.
            ("emails, subject contains 2 chars (common)", "/dashboard/emails?subject=t%20"),
            ("emails, subject contains 2 chars (none)", "/dashboard/emails?subject=zq"),
            ("emails, sender contains (common)", "/dashboard/emails?from=no-reply"),
            ("emails, sender contains (none)", "/dashboard/emails?from=nobody-at-all"),
            ("one email", f"/dashboard/emails/{found.group(1)}"),
            ("suppressions", "/dashboard/suppressions"),
            ("suppressions, q=example.com", "/dashboard/suppressions?q=example.com"),
            ("suppressions, q=one address", "/dashboard/suppressions?q=suppressed-4242%40"),
            ("providers", "/dashboard/providers"),
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
