"""GET /logs/email against a large log: LOG_ROWS emails, LOG_ROWS_TODAY of them today.

The rows are written with INSERT ... SELECT FROM generate_series in chunks, through the
table's ordinary path: every constraint is checked, every index updated, and the
statement triggers that keep the per-bucket counters (the daily summary and the totals
come from them) fire as they would for the API's own inserts. Rows are inserted oldest
first, as the service writes them, so the table's physical order matches time.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
from harness.db import connect

from bench.config import (
    LOG_CHUNK,
    LOG_CURSOR_DEPTH,
    LOG_DAYS,
    LOG_DEEP_PAGE,
    LOG_QUERY_BUDGET_S,
    LOG_RECIPIENTS,
    LOG_REQUESTS,
    LOG_ROWS,
    LOG_ROWS_TODAY,
    LOG_WARMUP,
)
from bench.stack import BenchStack

# Row g (1-based) of LOG_ROWS: the first (LOG_ROWS - LOG_ROWS_TODAY) spread evenly over the
# LOG_DAYS before today (UTC), the rest evenly over today up to now ($8). Every 20th is queued
# (5 %), every 10th from the second on failed (10 %), the rest sent (85 %).
INSERT_CHUNK = """
INSERT INTO emails (
    id, project_id, sender, to_addrs, recipients, subject, text_body, message_id, status, attempts,
    last_error_code, last_error_enhanced, last_error_message,
    created_at, updated_at, sent_at, failed_at, next_attempt_at
)
SELECT
    gen_random_uuid(),
    (SELECT id FROM projects WHERE name = 'default'),
    'Mailroom <no-reply@example.com>',
    ARRAY['User ' || r || ' <user-' || r || '@example.com>'],
    ARRAY['user-' || r || '@example.com'],
    'Your receipt #' || g,
    'Hello, this is message ' || g || '.',
    '<bench-' || g || '@mailroom.example.com>',
    st,
    CASE st WHEN 'queued' THEN 0 ELSE 1 END,
    CASE st WHEN 'failed' THEN 550 END,
    CASE st WHEN 'failed' THEN '5.1.1' END,
    CASE st WHEN 'failed' THEN 'Requested action not taken: mailbox unavailable' END,
    c,
    c + interval '2 seconds',
    CASE st WHEN 'sent' THEN c + interval '2 seconds' END,
    CASE st WHEN 'failed' THEN c + interval '2 seconds' END,
    CASE st WHEN 'queued' THEN c END
FROM (
    SELECT
        g,
        g % $5::bigint AS r,
        CASE WHEN g % 20 = 0 THEN 'queued' WHEN g % 10 = 1 THEN 'failed' ELSE 'sent' END AS st,
        CASE WHEN g <= $3::bigint
            THEN $4::timestamptz - $6::interval + ($6::interval / $3::float8) * (g - 1)
            ELSE $4::timestamptz
                + (($8::timestamptz - $4::timestamptz) / ($7::bigint - $3::bigint)::float8)
                * (g - $3::bigint - 1)
        END AS c
    FROM generate_series($1::bigint, $2::bigint) AS g
) AS rows
"""


@dataclass
class QueryTiming:
    name: str
    path: str
    requests: int = 0
    errors: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0


@dataclass
class LogsResult:
    rows: int
    load_seconds: float = 0.0
    queries: list[QueryTiming] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    # API CPU (% of one core) with 50 dashboards' live streams open (bench/dashboard.py).
    live_cpu_percent: float | None = None


async def load(db_name: str, rows: int, today_rows: int) -> None:
    """Insert the rows in LOG_CHUNK transactions, then VACUUM ANALYZE (as autovacuum
    would soon after such a load: fresh statistics and a visibility map)."""
    now = datetime.now(UTC)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    older = rows - today_rows
    conn = await connect(db_name)
    try:
        for first in range(1, rows + 1, LOG_CHUNK):
            last = min(first + LOG_CHUNK - 1, rows)
            await conn.execute(
                INSERT_CHUNK,
                first,  # $1
                last,  # $2
                older,  # $3
                today,  # $4
                LOG_RECIPIENTS,  # $5
                timedelta(days=LOG_DAYS),  # $6
                rows,  # $7
                now,  # $8
            )
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


def _percentile(sorted_ms: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, min(len(sorted_ms), round(pct / 100 * len(sorted_ms) + 0.5)))
    return sorted_ms[rank - 1]


async def _time(client: httpx.AsyncClient, timing: QueryTiming) -> None:
    """LOG_WARMUP untimed requests, then LOG_REQUESTS timed ones one after another (or as
    many as fit in LOG_QUERY_BUDGET_S)."""
    for _ in range(LOG_WARMUP):
        await client.get(timing.path)
    latencies: list[float] = []
    budget_end = time.monotonic() + LOG_QUERY_BUDGET_S
    while len(latencies) < LOG_REQUESTS and time.monotonic() < budget_end:
        began = time.perf_counter()
        response = await client.get(timing.path)
        latencies.append((time.perf_counter() - began) * 1000)
        if response.status_code != 200:
            timing.errors += 1
    latencies.sort()
    timing.requests = len(latencies)
    timing.p50_ms = statistics.median(latencies)
    timing.p99_ms = _percentile(latencies, 99)
    timing.max_ms = latencies[-1]


async def _cursor_path(client: httpx.AsyncClient, depth: int) -> str:
    """The path of the page `depth` pages in, reached by following nextCursor."""
    path = "/logs/email"
    for _ in range(depth):
        response = await client.get(path)
        response.raise_for_status()
        cursor = response.json()["pagination"]["nextCursor"]
        path = f"/logs/email?{httpx.QueryParams({'cursor': cursor})}"
    return path


async def _check_first_page(client: httpx.AsyncClient, result: LogsResult, today: int) -> None:
    """The report and the total must be right, or the timings mean nothing."""
    response = await client.get("/logs/email")
    response.raise_for_status()
    page = response.json()
    if page["summary"]["total"] != today:
        result.problems.append(f"summary.total {page['summary']['total']}, expected {today}")
    if page["pagination"]["total"] != result.rows:
        result.problems.append(f"pagination.total {page['pagination']['total']}, not {result.rows}")


async def _query(api_url: str, api_key: str, result: LogsResult, today: int) -> None:
    headers = {"Authorization": f"Bearer {api_key}"}
    async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=60.0) as client:
        await _check_first_page(client, result, today)
        queries = [
            ("first page", "/logs/email"),
            (f"cursor, page {LOG_CURSOR_DEPTH + 1}", await _cursor_path(client, LOG_CURSOR_DEPTH)),
            (f"page={LOG_DEEP_PAGE}", f"/logs/email?page={LOG_DEEP_PAGE}&limit=20"),
            ("status=failed", "/logs/email?status=failed"),
            ("to=user-123@…", "/logs/email?to=user-123@example.com"),
        ]
        for name, path in queries:
            timing = QueryTiming(name=name, path=path)
            await _time(client, timing)
            result.queries.append(timing)
            if timing.errors:
                result.problems.append(f"{name}: {timing.errors} non-200 answers")
    # The dashboard's pages over the same log (bench/dashboard.py).
    from bench.dashboard import dashboard_timings

    for timing in await dashboard_timings(api_url, api_key, _time):
        result.queries.append(timing)
        if timing.errors:
            result.problems.append(f"dashboard {timing.name}: {timing.errors} non-200 answers")


def run_logs(stack: BenchStack, rows: int = LOG_ROWS, today: int = LOG_ROWS_TODAY) -> LogsResult:
    result = LogsResult(rows=rows)
    from bench import dashboard

    with stack.run("logs", workers=0, settings=dashboard.settings(stack.smtp_port)) as run:
        began = time.monotonic()
        asyncio.run(load(run.db_name, rows, today))
        result.load_seconds = time.monotonic() - began
        print(f"   loaded {rows:,} emails in {result.load_seconds:.0f} s", flush=True)
        began = time.monotonic()
        asyncio.run(dashboard.load(run.db_name))
        print(
            f"   loaded {dashboard.SUPPRESSIONS:,} suppressions and the emails' attempts "
            f"in {time.monotonic() - began:.0f} s",
            flush=True,
        )
        asyncio.run(_query(run.api_url, run.api_key, result, today))
        if run.api.pid is not None:
            result.live_cpu_percent = asyncio.run(
                dashboard.live_cpu_percent(run.api_url, run.api_key, run.api.pid)
            )
    return result
