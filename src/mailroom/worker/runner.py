"""The worker's lifecycle: build resources, consume jobs, drain on shutdown, close everything.

start()  metrics endpoint (WORKER_METRICS_PORT), database, dispatcher (own Redis
         connection), transport, BullMQ worker, sweeper, counters fold, retention purge
         (with RETENTION_DAYS), heartbeat (a file touched every few seconds, for
         `mailroom health --worker`); each pushed on an AsyncExitStack with its closer
stop()   the stack in reverse: stop taking jobs; let in-flight sends finish within the
         grace period; cancel what is left (each records its attempt and goes back for a
         retry); stop the loops; remove the heartbeat file; close SMTP connections, Redis
         and the database pool; stop the metrics endpoint last
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog
from bullmq import Job, Worker

from mailroom.db.engine import open_database
from mailroom.emails.counters import fold_forever
from mailroom.emails.retention import purge_expired_forever
from mailroom.metrics.server import serve_worker_metrics
from mailroom.periodic import every
from mailroom.queue.dispatcher import Dispatcher, queue_options
from mailroom.queue.jobs import BATCH_JOB_NAME, DeliveryBatch, DeliveryJob
from mailroom.settings import Settings
from mailroom.transport.base import MailTransport
from mailroom.transport.from_settings import smtp_transport
from mailroom.worker.delivery import Deliverer
from mailroom.worker.registry import WorkerRegistry
from mailroom.worker.sweeper import Sweeper
from mailroom.worker.webhooks import open_webhooks

log = structlog.get_logger(__name__)

# A job's lock is renewed every lockDuration/2 while it is processed, so the lock does
# not need to outlast an SMTP timeout, only a stalled event loop. It does bound how
# long a job stays stuck in BullMQ's "active" list when nobody processes it: a worker
# killed mid-job, or a job fetched just as Worker.close() ran (bullmq 3.4 can leave
# one behind). The stalled check, run by every worker, then moves it back to "wait".
# Duplicates this may cause are no-ops (the claim is guarded).
_STALLED_JOB_RECOVERY = {"lockDuration": 10_000, "stalledInterval": 5_000, "maxStalledCount": 3}


HEARTBEAT_INTERVAL = 5.0


async def heartbeat(
    path: Path, consumer: asyncio.Future[Any], interval: float = HEARTBEAT_INTERVAL
) -> None:
    """Touch `path` every `interval` seconds for as long as `consumer` runs.

    A worker whose job loop has died, or whose event loop is stuck, stops touching it,
    and `mailroom health --worker` reports it unhealthy once the file is 30 s old. A
    file that cannot be written (a read-only or missing directory) is logged once and
    left alone: it must not stop deliveries.
    """

    async def touch() -> None:
        await asyncio.to_thread(path.touch)

    await every(
        interval,
        touch,
        event="worker.heartbeat_failed",
        first_delay=0,
        while_=lambda: not consumer.done(),
        stop_on_failure=True,
        log_fields={"path": str(path)},
    )


class DeliveryWorker:
    def __init__(
        self,
        settings: Settings,
        *,
        concurrency: int | None = None,
        transport: MailTransport | None = None,
        sandbox_transport: MailTransport | None = None,
        grace_period: float = 30.0,
        sweep: bool = True,
    ) -> None:
        self._settings = settings
        self._concurrency = concurrency or settings.worker_concurrency
        self._transport = transport
        self._sandbox_transport = sandbox_transport
        self._grace = grace_period
        self._sweep = sweep
        self._inflight: set[asyncio.Future[str]] = set()
        # What start() opened, closed by stop() in reverse order.
        self._resources: contextlib.AsyncExitStack | None = None

    async def start(self) -> None:
        async with contextlib.AsyncExitStack() as resources:
            # Should anything below fail, what was opened so far is closed on the way out.
            await self._open(resources)
            self._resources = resources.pop_all()
        log.info("worker.started", concurrency=self._concurrency, queue=self._settings.queue_name)

    async def _open(self, resources: contextlib.AsyncExitStack) -> None:
        """Open everything, each followed by what closes it: the stack closes in reverse.

        So stop() drains the deliveries, cancels the loops, removes the heartbeat file,
        closes the SMTP connections, Redis and the database, and stops the metrics
        endpoint last (the drain can be watched).
        """
        settings = self._settings
        transport = self._transport or smtp_transport(settings)
        metrics = serve_worker_metrics(
            settings.worker_metrics_host, settings.worker_metrics_port, transport
        )
        if metrics is not None:
            resources.push_async_callback(_closing(metrics.stop))
        sessions = await resources.enter_async_context(
            open_database(settings, pool_size=min(self._concurrency, 20))
        )
        # Registered before any claim, unregistered after the drain (pushed earlier: the
        # stack closes in reverse) so that the heartbeat vouches for every send in flight.
        registry = WorkerRegistry(sessions, settings)
        await registry.beat()
        resources.push_async_callback(registry.unregister)
        dispatcher = Dispatcher(settings)
        resources.push_async_callback(_closing(dispatcher.aclose))
        resources.push_async_callback(_closing(transport.aclose))
        deliverer = Deliverer(
            sessions=sessions,
            dispatcher=dispatcher,
            transport=transport,
            settings=settings,
            sandbox_transport=self._sandbox_transport,
            registry=registry,
        )

        async def process(job: Job, token: str) -> str:
            # Each delivery runs in a task of its own, so that stop() can cancel the
            # deliveries (which record the interruption) while BullMQ still finishes
            # the job normally instead of leaving it locked until it stalls.
            if job.name == BATCH_JOB_NAME:
                delivery = deliverer.deliver_batch(DeliveryBatch.from_data(job.data))
            else:
                delivery = deliverer.deliver(DeliveryJob.from_data(job.data))
            task = asyncio.ensure_future(delivery)
            self._inflight.add(task)
            try:
                return await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
                return "interrupted"
            finally:
                self._inflight.discard(task)

        # The Worker gets its own Redis connections (a Queue sharing one can lose job data).
        worker = Worker(
            settings.queue_name,
            process,
            {
                **queue_options(settings),
                "concurrency": self._concurrency,
                "autorun": False,
                **_STALLED_JOB_RECOVERY,
            },
        )
        heartbeat_file = settings.worker_heartbeat_file
        if heartbeat_file is not None:
            resources.callback(_remove, heartbeat_file)
        tasks: list[asyncio.Task[None]] = []
        resources.push_async_callback(_cancel, tasks)
        tasks.append(asyncio.create_task(registry.run(), name="worker-registry"))
        consumer = asyncio.create_task(worker.run(), name="bullmq-worker")
        tasks.append(consumer)
        resources.push_async_callback(self._drain, worker)
        if self._sweep:
            sweeper = Sweeper(sessions=sessions, dispatcher=dispatcher, settings=settings)
            tasks.append(asyncio.create_task(sweeper.run(), name="sweeper"))
        tasks.append(asyncio.create_task(fold_forever(sessions), name="fold-counters"))
        if settings.retention_days:  # one worker at a time purges (an advisory lock)
            purging = purge_expired_forever(sessions, settings)
            tasks.append(asyncio.create_task(purging, name="retention"))
        # Webhooks: their own queue, pool and loops (closed before the database).
        tasks.extend(await open_webhooks(resources, sessions, settings, dispatch=self._sweep))
        if heartbeat_file is not None:
            beat = heartbeat(heartbeat_file, consumer)
            tasks.append(asyncio.create_task(beat, name="heartbeat"))

    async def stop(self) -> None:
        resources, self._resources = self._resources, None
        log.info("worker.stopping", grace_s=self._grace)
        if resources is not None:
            try:
                await resources.aclose()
            except Exception as exc:  # noqa: BLE001 - every closer ran; say which one failed
                log.warning("worker.close_failed", error=str(exc))
        log.info("worker.stopped")

    async def _drain(self, worker: Worker) -> None:
        """Stop taking jobs; let in-flight sends finish within the grace period, then
        cancel what is left (each records its attempt and goes back for a retry)."""
        deadline = asyncio.get_running_loop().time() + self._grace
        closing = asyncio.ensure_future(worker.close())
        await asyncio.wait({closing}, timeout=self._grace)
        # bullmq's close() can return while a job it fetched during the close is still
        # being delivered, so wait for our own deliveries too, then close resources.
        pending = {closing, *self._inflight}
        remaining = max(0.0, deadline - asyncio.get_running_loop().time())
        _, pending = await asyncio.wait(pending, timeout=remaining)
        if pending:
            log.warning(
                "worker.grace_expired",
                in_flight=len(self._inflight),
                hint="interrupting them; each is recorded and queued for a retry",
            )
            for delivery in list(self._inflight):
                delivery.cancel()
            await asyncio.gather(closing, *self._inflight, return_exceptions=True)

    async def __aenter__(self) -> DeliveryWorker:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def _closing(close: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
    """``close``, with a failure logged rather than raised: the rest still get closed."""

    async def logged() -> None:
        try:
            await close()
        except Exception as exc:  # noqa: BLE001 - close the rest regardless
            log.warning("worker.close_failed", error=str(exc))

    return logged
