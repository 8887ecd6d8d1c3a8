"""Group commit for POST /send: concurrent requests' emails stored in one transaction.

Each request still answers only after its email is committed (and its job handed
to Redis), exactly as with a transaction of its own; the requests that arrive
while a group is being written simply share the next one. This takes a BEGIN, an
INSERT and a COMMIT round trip, and a pass through the ORM's session machinery,
off each request. A group that fails (the database went away) fails every
request in it with the same error, and none of their emails is stored.

The emails of a group due now also go out as batch jobs (as POST /send/batch's
do): one job per BATCH_JOB_SIZE emails rather than one each, which is what the
queue and the worker spend most of their time on per email. Under light load a
group is one email, and its batch job carries just that one.

Requests with an Idempotency-Key or attachments keep a transaction of their own:
the first must reserve its key in the same transaction, and the second should not
make small emails wait behind megabytes.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.coalescer import Coalescer
from mailroom.emails import repository
from mailroom.queue.jobs import DeliveryBatch, DeliveryJob, Job
from mailroom.unit_of_work import Dispatch, UnitOfWork, unit_of_work

MAX_GROUP = 200  # emails per transaction

_Item = tuple[dict[str, object], DeliveryJob]


class Intake:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        dispatch: Dispatch,
        *,
        batch_job_size: int,
    ) -> None:
        self._sessions = sessions
        self._dispatch = dispatch
        self._batch_job_size = batch_job_size
        self._groups: Coalescer[_Item, None] = Coalescer(self._store, max_items=MAX_GROUP)

    def transaction(self) -> AbstractAsyncContextManager[UnitOfWork]:
        """A transaction of its own, for a request that cannot share one."""
        return unit_of_work(self._sessions, self._dispatch)

    async def store(self, row: dict[str, object], job: DeliveryJob) -> None:
        """Return once the email is committed and its job dispatched (or handed to the sweeper)."""
        await self._groups.submit((row, job))

    async def _store(self, items: list[_Item]) -> list[None]:
        jobs = self._jobs(items)
        async with unit_of_work(self._sessions, self._dispatch) as uow:
            await repository.add_emails(uow.session, [row for row, _ in items])
            for job in jobs:
                uow.dispatch_after_commit(job)
        return [None] * len(items)

    def _jobs(self, items: list[_Item]) -> list[Job]:
        """Scheduled emails keep their delayed job; the others share batch jobs."""
        jobs: list[Job] = [job for _, job in items if job.delay > 0]
        due = [(row, job) for row, job in items if job.delay <= 0]
        for start in range(0, len(due), self._batch_job_size):
            chunk = due[start : start + self._batch_job_size]
            batch = DeliveryBatch(tuple(job.email_id for _, job in chunk))
            for row, _ in chunk:
                row["batch_job_id"] = batch.job_id  # for the sweeper (see Dispatcher.absent)
            jobs.append(batch)
        return jobs
