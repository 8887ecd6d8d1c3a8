"""Values read when Prometheus scrapes, rather than counted as things happen.

On the API, ``queue_depth`` reads PostgreSQL's counters (emails by status, what
``pagination.total`` uses too, exact and a few small index reads) and BullMQ's job
counts, asynchronously, before the text is generated; each scrape's process reads them
itself, so multi-process mode has nothing to add up. A source that cannot be read in
``SOURCE_TIMEOUT`` seconds is left out and reported by ``mailroom_metrics_source_up``.

On the worker, ``SmtpPoolCollector`` reads the transport's open connections as the
scrape happens.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.emails.log import emails_by_status

log = structlog.get_logger(__name__)

# BullMQ's names: waiting for a worker, being processed, waiting for their time (retries).
JOB_STATES = ("waiting", "active", "delayed")
SOURCE_TIMEOUT = 2.0  # seconds; Prometheus' own scrape timeout is 10 s by default


async def email_counts(sessions: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    """Emails present in each status."""
    async with sessions() as session:
        return await emails_by_status(session)


async def job_counts(queue: Any) -> dict[str, int]:
    """BullMQ jobs by state (a batch's job carries up to BATCH_JOB_SIZE emails)."""
    counts = await queue.getJobCounts(*JOB_STATES)
    return {state: int(counts.get(state) or 0) for state in JOB_STATES}


async def queue_depth(sessions: async_sessionmaker[AsyncSession], queue: Any) -> list[Metric]:
    emails, jobs = await asyncio.gather(
        asyncio.wait_for(email_counts(sessions), SOURCE_TIMEOUT),
        asyncio.wait_for(job_counts(queue), SOURCE_TIMEOUT),
        return_exceptions=True,
    )
    up = GaugeMetricFamily(
        "mailroom_metrics_source_up",
        "Whether this scrape could read a source (1) or not (0): database (mailroom_emails), "
        "redis (mailroom_queue_jobs)",
        labels=["source"],
    )
    families: list[Metric] = [up]
    for source, result, name, documentation, label in (
        ("database", emails, "mailroom_emails", "Emails present in each status", "status"),
        ("redis", jobs, "mailroom_queue_jobs", "BullMQ delivery jobs in each state", "state"),
    ):
        if isinstance(result, BaseException):
            if not isinstance(result, Exception):
                raise result  # cancelled: not a fault of the source
            log.warning("metrics.source_failed", source=source, error=type(result).__name__)
            up.add_metric([source], 0)
            continue
        up.add_metric([source], 1)
        family = GaugeMetricFamily(name, documentation, labels=[label])
        for key, value in result.items():
            family.add_metric([key], value)
        families.append(family)
    return families


class ProviderCollector:
    """Per provider (a transport over SMTP_PROVIDERS): sent, failed, throttled, breaker, rate."""

    def __init__(self, transport: object) -> None:
        self._transport = transport

    def collect(self) -> Iterator[Metric]:
        stats = getattr(self._transport, "stats", None)
        if not callable(stats):
            return
        rows = stats()
        families = {
            key: CounterMetricFamily(f"mailroom_provider_{key}", documentation, labels=["provider"])
            for key, documentation in (
                ("sent", "Messages a provider accepted"),
                ("failed", "Attempts through a provider that did not deliver"),
                ("throttled", "Throttling answers from a provider (no attempt counted)"),
                ("paced", "Emails that waited because a provider was at its limit"),
            )
        }
        breaker = GaugeMetricFamily(
            "mailroom_provider_breaker_state",
            "A provider's circuit breaker: 0 closed, 1 half-open, 2 open",
            labels=["provider"],
        )
        rate = GaugeMetricFamily(
            "mailroom_provider_rate_per_second",
            "Messages per second a provider may take now (throttling slowdowns included)",
            labels=["provider"],
        )
        for row in rows:
            name = str(row["name"])
            for key, family in families.items():
                family.add_metric([name], float(row[key]))
            breaker.add_metric([name], _BREAKER_VALUES.get(str(row["breaker"]), 0))
            if row["rate"] is not None:
                rate.add_metric([name], float(row["rate"]))
        yield from families.values()
        yield breaker
        yield rate


_BREAKER_VALUES = {"closed": 0, "half_open": 1, "open": 2}


class SmtpPoolCollector:
    """``mailroom_smtp_pool_open_connections`` of a transport that keeps a pool."""

    def __init__(self, transport: object) -> None:
        self._transport = transport

    def collect(self) -> Iterator[Metric]:
        # Runs in the metrics server's thread; reading a length is safe there.
        open_connections = getattr(self._transport, "open_connections", None)
        if isinstance(open_connections, int):
            yield GaugeMetricFamily(
                "mailroom_smtp_pool_open_connections",
                "SMTP connections this worker process holds open (in use or idle)",
                value=open_connections,
            )
