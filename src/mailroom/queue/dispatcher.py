"""Hands delivery jobs to BullMQ.

Never raises: a job Redis did not take is the sweeper's to dispatch again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import structlog
from bullmq import Queue

from mailroom.breaker import Breaker
from mailroom.coalescer import Coalescer
from mailroom.queue.jobs import DeliveryJob, Job, job_name
from mailroom.settings import Settings
from mailroom.transport.pacing import read_breakers

log = structlog.get_logger(__name__)

# If the processor itself crashes (PostgreSQL away, a bug), BullMQ retries the job.
# SMTP retries are not these: the worker schedules each SMTP attempt as a new job.
_CRASH_RETRIES = {"attempts": 10, "backoff": {"type": "exponential", "delay": 1000}}


def queue_options(settings: Settings) -> dict[str, Any]:
    return {"connection": settings.redis_url, "prefix": settings.queue_prefix}


_COALESCE_MAX_CALLS = 200


class Dispatcher:
    def __init__(self, settings: Settings) -> None:
        self._queue = Queue(settings.queue_name, queue_options(settings))
        self._timeout = settings.enqueue_timeout
        self._prefix = settings.queue_prefix
        # After Redis failed to take a dispatch, skip it for a while: the sweeper catches up.
        self._breaker = Breaker()
        # Concurrent dispatches (one per request or job) share one addBulk.
        self._adds: Coalescer[tuple[Job, ...], bool] = Coalescer(
            self._add_together, max_items=_COALESCE_MAX_CALLS
        )

    @property
    def queue(self) -> Queue:
        return self._queue

    async def dispatch(self, jobs: Sequence[Job]) -> bool:
        """Queue the jobs; returns False (and logs) if Redis did not take them in time."""
        if not jobs:
            return True
        return await self._adds.submit(tuple(jobs))

    async def _add_together(self, calls: list[tuple[Job, ...]]) -> list[bool]:
        added = await self._add([job for jobs in calls for job in jobs])
        return [added] * len(calls)

    async def _add(self, jobs: list[Job]) -> bool:
        if self._breaker.is_open:
            log.debug("queue.dispatch_skipped", jobs=len(jobs), reason="redis recently down")
            return False
        bulk = [
            {
                "name": job_name(job),
                "data": job.data(),
                "opts": {
                    "jobId": job.job_id,
                    "delay": int(job.delay * 1000),
                    # PostgreSQL keeps the record; Redis memory must stay flat.
                    "removeOnComplete": True,
                    # A failed job kept in Redis would block its id, and with it the
                    # sweeper's re-dispatch; failures are logged and in PostgreSQL.
                    "removeOnFail": True,
                    **_CRASH_RETRIES,
                },
            }
            for job in jobs
        ]
        try:
            await asyncio.wait_for(self._queue.addBulk(bulk), timeout=self._timeout)
        except Exception as exc:  # noqa: BLE001 - any Redis fault means "not dispatched"
            self._breaker.trip()
            log.warning(
                "queue.dispatch_failed",
                jobs=len(jobs),
                error=str(exc) or type(exc).__name__,
                hint="the sweeper will dispatch these emails once Redis is back",
            )
            return False
        return True

    async def absent(self, jobs: Sequence[DeliveryJob]) -> list[DeliveryJob]:
        """The jobs Redis does not hold (all of them if Redis cannot be asked).

        A job with ``queued_as`` counts as held if either that job (its batch) or its
        own id is there: a batch Redis lost is re-dispatched as single jobs, which must
        not look lost in turn on the next pass.
        """
        if not jobs:
            return []
        try:
            async with asyncio.timeout(self._timeout):
                pipeline = self._queue.client.pipeline(transaction=False)
                for job in jobs:
                    pipeline.exists(self._queue.toKey(job.job_id))
                    pipeline.exists(self._queue.toKey(job.queued_as or job.job_id))
                held = await pipeline.execute()
        except Exception:  # noqa: BLE001 - unknown means "dispatch it": duplicates are harmless
            return list(jobs)
        pairs = zip(held[::2], held[1::2], strict=True)
        return [job for job, (own, batch) in zip(jobs, pairs, strict=True) if not (own or batch)]

    async def ping(self) -> None:
        await self._queue.client.ping()

    async def provider_breakers(self) -> dict[str, str]:
        """Each SMTP provider's circuit breaker, as the workers last published it."""
        return await read_breakers(self._queue.client, self._prefix)

    async def aclose(self) -> None:
        await self._queue.close()
