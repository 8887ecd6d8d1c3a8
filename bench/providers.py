"""Several providers: two at rate=500/second each behind one smtp-sink, two worker processes.

The emails go in through POST /send/batch as in the e2e batch run; the figures are the
delivery rate of the whole (target: the configured 1,000/s within 5 %) and each
provider's own rate, from its attempts' times in the database. Separately, the CPU one
pacing decision costs (the Lua script through redis-py, measured in this process with
time.process_time against the run's Redis), as a share of a worker at 500 decisions/s:
with a batch job's 50 emails asking together (one script call) and one after another.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from harness.db import connect
from redis.asyncio import Redis

from bench.config import TUNED
from bench.e2e import E2EResult, measure
from bench.stack import BenchStack
from mailroom.transport.pacing import Lane, Pacer

RATE = 500  # per second, each provider
PROVIDERS = ("p1", "p2")
PACING_CALLS = 5_000
BATCH_JOB_SIZE = 50  # emails per batch job (BATCH_JOB_SIZE's default)


@dataclass
class ProvidersResult:
    e2e: E2EResult
    per_provider: dict[str, float] = field(default_factory=dict)  # emails/s
    pacing_cpu_us: float = 0.0  # per decision, a batch job's emails asking together
    pacing_cpu_us_alone: float = 0.0  # per decision, one email after another

    @property
    def configured(self) -> int:
        return RATE * len(PROVIDERS)

    @property
    def pacing_cpu_share(self) -> float:
        """Of one worker process pacing RATE emails per second."""
        return self.pacing_cpu_us * RATE / 1e6

    @property
    def pacing_cpu_share_alone(self) -> float:
        return self.pacing_cpu_us_alone * RATE / 1e6


def settings(smtp_port: int) -> dict[str, str]:
    urls = [
        f"smtp://127.0.0.1:{smtp_port}?security=none&name={name}&rate={RATE}/second&pool=25"
        for name in PROVIDERS
    ]
    return {**TUNED, "SMTP_HOST": "", "SMTP_PORT": "", "SMTP_PROVIDERS": " ".join(urls)}


async def _per_provider(db_name: str) -> dict[str, float]:
    conn = await connect(db_name)
    try:
        rows = await conn.fetch(
            """
            SELECT provider, count(*) AS n,
                   extract(epoch FROM max(finished_at) - min(finished_at)) AS span
            FROM delivery_attempts WHERE outcome = 'accepted' GROUP BY provider
            """
        )
    finally:
        await conn.close()
    return {str(r["provider"]): (r["n"] - 1) / float(r["span"]) if r["span"] else 0.0 for r in rows}


async def _pacing_cost(redis_port: int, together: int) -> float:
    """CPU microseconds per pacing decision in this process, ``together`` asking at once
    (1: one email after another; 50: a batch job's emails, which share one script call)."""
    client = Redis.from_url(f"redis://127.0.0.1:{redis_port}/0")
    pacer = Pacer(client, f"bench-pacing-{together}")
    lanes = [Lane(name, 1e-6) for name in PROVIDERS]  # never waiting: the decision alone

    async def decide(n: int) -> None:
        for _ in range(n // together):
            await asyncio.gather(*(pacer.reserve(lanes, 1.0) for _ in range(together)))

    try:
        await decide(200)
        began = time.process_time()
        await decide(PACING_CALLS)
        return (time.process_time() - began) / PACING_CALLS * 1e6
    finally:
        await client.aclose()


def run_providers(stack: BenchStack, emails: int) -> ProvidersResult:
    result = E2EResult(mode="batch", workers=2, emails=emails, profile="providers")
    with stack.run("providers", workers=2, settings=settings(stack.smtp_port)) as run:
        asyncio.run(measure(run, result, ""))
        per_provider = asyncio.run(_per_provider(run.db_name))
        grouped = asyncio.run(_pacing_cost(stack.redis_port, BATCH_JOB_SIZE))
        alone = asyncio.run(_pacing_cost(stack.redis_port, 1))
    result.rss_mb = dict(run.rss_mb)
    return ProvidersResult(result, per_provider, grouped, alone)
