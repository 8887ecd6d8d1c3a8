"""Group commit for POST /send: concurrent requests' emails stored in one transaction.

Each request still answers only after its email is committed (and its job handed
to Redis), exactly as with a transaction of its own; the requests that arrive
while a group is being written simply share the next one. This takes a BEGIN, an
INSERT and a COMMIT round trip, and a pass through the ORM's session machinery,
off each request. A group that fails (the database went away) fails every
request in it with the same error, and none of their emails is stored.

The emails of a group due now also go out as batch jobs, split as POST /send/batch's
are (``new_emails.first_jobs``): one job per BATCH_JOB_SIZE emails rather than one
each, which is what the queue and the worker spend most of their time on per email.
Under light load a group is one email, and its batch job carries just that one.

Requests with an Idempotency-Key or attachments keep a transaction of their own:
the first must reserve its key in the same transaction, and the second should not
make small emails wait behind megabytes.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.coalescer import Coalescer
from mailroom.emails import transitions_repository
from mailroom.emails.new_emails import Stored, first_jobs
from mailroom.queue.jobs import DeliveryJob
from mailroom.unit_of_work import Dispatch, UnitOfWork, unit_of_work

MAX_GROUP = 200  # emails per transaction


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
        self._groups: Coalescer[Stored, None] = Coalescer(self._store, max_items=MAX_GROUP)

    def session(self) -> AbstractAsyncContextManager[AsyncSession]:
        """A session for a read before the email is stored (its recipients' suppressions)."""
        return self._sessions()

    def transaction(self) -> AbstractAsyncContextManager[UnitOfWork]:
        """A transaction of its own, for a request that cannot share one."""
        return unit_of_work(self._sessions, self._dispatch)

    async def store(self, row: dict[str, object], job: DeliveryJob) -> None:
        """Return once the email is committed and its job dispatched (or handed to the sweeper)."""
        await self._groups.submit((row, job))

    async def _store(self, items: list[Stored]) -> list[None]:
        # Emails of many requests: their batch jobs carry no single request's id.
        jobs = first_jobs(items, batch_job_size=self._batch_job_size)
        async with unit_of_work(self._sessions, self._dispatch) as uow:
            await transitions_repository.add_emails(uow.session, [row for row, _ in items])
            for job in jobs:
                uow.dispatch_after_commit(job)
        return [None] * len(items)
