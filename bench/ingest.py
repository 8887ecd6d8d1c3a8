"""Ingest: POST /send alone (no worker running) at HTTP_CONNECTIONS for INGEST_SECONDS.

Without workers the API is not competing with delivery for the two cores, so this is
what one API process (or `--api-processes N`) can accept; the jobs pile up in Redis. At the
default settings the one key is limited (SEND_RATE_LIMIT): what is over it gets 429.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from harness.db import connect

from bench.config import HTTP_CONNECTIONS, PROFILES
from bench.stack import BenchStack
from bench.wrk import WrkResult, run_for


@dataclass
class IngestResult:
    seconds: int
    profile: str = "tuned"  # or "defaults" (bench.config)
    wrk: WrkResult | None = None
    stored: int = 0
    rss_mb: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


async def _count(db_name: str) -> int:
    conn = await connect(db_name)
    try:
        count: int = await conn.fetchval("SELECT count(*) FROM emails")
        return count
    finally:
        await conn.close()


def run_ingest(
    stack: BenchStack, wrk_path: str, seconds: int, *, profile: str = "tuned"
) -> IngestResult:
    result = IngestResult(seconds=seconds, profile=profile)
    with stack.run(f"ingest-{profile}", workers=0, settings=PROFILES[profile]) as run:
        result.wrk = run_for(wrk_path, run.api_url, run.api_key, run.api.log.parent, seconds)
        result.stored = asyncio.run(_count(run.db_name))
    result.rss_mb = dict(run.rss_mb)
    # wrk stops mid-flight: up to one request per connection may be stored unanswered.
    if not 0 <= result.stored - result.wrk.accepted <= HTTP_CONNECTIONS:
        result.problems.append(
            f"{result.wrk.accepted} requests answered 202 but {result.stored} emails stored"
        )
    # 429s are the point of the defaults run; anything else that is not a 202 is a fault.
    refused = result.wrk.non_2xx - (result.wrk.limited if profile == "defaults" else 0)
    if refused or result.wrk.socket_errors:
        result.problems.append(
            f"{refused} non-2xx answers (429s aside at the defaults), "
            f"{result.wrk.socket_errors} socket errors"
        )
    return result
