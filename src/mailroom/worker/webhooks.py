"""The worker's webhook loops: hand due deliveries to BullMQ, send them, purge the log.

Deliveries have their own queue (WEBHOOK_QUEUE_NAME), so a slow or dead receiver never
delays an email. A job carries up to JOB_SIZE delivery ids; its processor claims them
(guarded: a duplicate job finds nothing), sends them at once through the process's one
connection pool, and records each attempt. Jobs are large because each costs two
transactions and BullMQ's bookkeeping whatever its size; the jobs in flight never hold
more deliveries than WEBHOOK_CONCURRENCY (the pool's size), so no request waits for a
connection while its timeout runs. The dispatcher pass (one worker at a time) finds what
is due in PostgreSQL, new events, retries and jobs Redis lost, every
WEBHOOK_POLL_INTERVAL seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from datetime import UTC, datetime, timedelta

import structlog
from bullmq import Job, Queue, Worker
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.periodic import RunAgainIn, every
from mailroom.queue.dispatcher import queue_options
from mailroom.settings import Settings
from mailroom.webhooks import delivery
from mailroom.webhooks.deliveries_repository import purge_attempts
from mailroom.webhooks.sender import HttpSender, WebhookSender

log = structlog.get_logger(__name__)

JOB_NAME = "webhooks"
JOB_SIZE = 100
DISPATCH_LIMIT = 1000
PURGE_INTERVAL = 3600.0
PURGE_BATCH = 5000
_STALLED_JOB_RECOVERY = {"lockDuration": 30_000, "stalledInterval": 15_000, "maxStalledCount": 3}


def job_shape(concurrency: int) -> tuple[int, int]:
    """(deliveries per job, jobs at once) for WEBHOOK_CONCURRENCY requests in flight: jobs
    as large as allowed, and never more deliveries in flight than the pool's connections."""
    size = min(JOB_SIZE, concurrency)
    return size, max(1, concurrency // size)


def _job_options(first: uuid.UUID, attempts: int) -> dict[str, object]:
    return {
        "jobId": f"whd-{first}-{attempts}",
        "removeOnComplete": True,
        "removeOnFail": True,
        "attempts": 5,
        "backoff": {"type": "exponential", "delay": 1000},
    }


async def open_webhooks(
    resources: contextlib.AsyncExitStack,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    sender: WebhookSender | None = None,
    dispatch: bool = True,
) -> list[asyncio.Task[None]]:
    """Start the webhook loops; ``resources`` closes them (in reverse). Returns the tasks
    the caller cancels on the way out."""
    http = sender or HttpSender(
        timeout=settings.webhook_timeout,
        allow_http=settings.webhook_allow_http,
        allow_private=settings.webhook_allow_private,
        max_connections=settings.webhook_concurrency,
    )
    resources.push_async_callback(http.aclose)
    options = queue_options(settings)
    queue = Queue(settings.webhook_queue_name, options)
    resources.push_async_callback(queue.close)
    rng = random.Random()
    job_size, jobs_at_once = job_shape(settings.webhook_concurrency)

    async def process(job: Job, token: str) -> str:
        ids = [uuid.UUID(i) for i in job.data["deliveries"]]
        done = await delivery.deliver(sessions, ids, sender=http, settings=settings, rng=rng)
        return f"{len(done)} sent"

    worker = Worker(
        settings.webhook_queue_name,
        process,
        {
            **options,
            "concurrency": jobs_at_once,
            "autorun": False,
            **_STALLED_JOB_RECOVERY,
        },
    )

    async def close_worker() -> None:
        try:
            await asyncio.wait_for(worker.close(), settings.webhook_timeout + 5)
        except Exception as exc:  # noqa: BLE001 - a lease brings back what was cut short
            log.warning("webhooks.close_failed", error=str(exc) or type(exc).__name__)

    tasks: list[asyncio.Task[None]] = []
    resources.push_async_callback(close_worker)
    tasks.append(asyncio.create_task(worker.run(), name="webhooks-worker"))

    async def dispatch_due() -> RunAgainIn | None:
        due = await delivery.take_due(sessions, settings=settings, limit=DISPATCH_LIMIT)
        if not due:
            return None
        jobs = [
            {
                "name": JOB_NAME,
                "data": {"deliveries": [str(i) for i, _ in chunk]},
                "opts": _job_options(*chunk[0]),
            }
            for chunk in (due[n : n + job_size] for n in range(0, len(due), job_size))
        ]
        try:
            await asyncio.wait_for(queue.addBulk(jobs), settings.enqueue_timeout)
        except Exception as exc:  # noqa: BLE001 - any Redis fault: due again next pass
            await delivery.give_back(sessions, [i for i, _ in due])
            log.warning("webhooks.dispatch_failed", deliveries=len(due), error=str(exc))
            return None
        return RunAgainIn(0.0) if len(due) >= DISPATCH_LIMIT else None

    async def purge() -> None:
        before = datetime.now(UTC) - timedelta(days=settings.webhook_log_days)
        while True:
            async with sessions() as session:
                gone = await purge_attempts(session, before=before, limit=PURGE_BATCH)
                await session.commit()
            if gone:
                log.info("webhooks.purged", attempts=gone)
            if gone < PURGE_BATCH:
                return

    if dispatch:
        tasks.append(
            asyncio.create_task(
                every(
                    settings.webhook_poll_interval, dispatch_due, event="webhooks.dispatch_failed"
                ),
                name="webhooks-dispatch",
            )
        )
    tasks.append(
        asyncio.create_task(
            every(PURGE_INTERVAL, purge, event="webhooks.purge_failed", first_delay=60.0),
            name="webhooks-purge",
        )
    )
    return tasks
