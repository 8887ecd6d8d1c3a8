"""Group commit for POST /send: concurrent requests' emails stored in one transaction.

Each request still answers only after its email is committed (and its job handed
to Redis), exactly as with a transaction of its own; the requests that arrive
while a group is being written simply share the next one. This takes a BEGIN, an
INSERT and a COMMIT round trip, and a pass through the ORM's session machinery,
off each request. A group that fails (the database went away) fails every
request in it with the same error, and none of their emails is stored.

The suppression list is read in the group's transaction too: one indexed query for the
recipients of every email in the group (see suppression_check).

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
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.coalescer import Coalescer
from mailroom.emails import suppression_check, transitions_repository
from mailroom.emails.new_emails import Stored, first_jobs, mark_suppressed
from mailroom.emails.suppression_check import Check
from mailroom.queue.jobs import DeliveryJob
from mailroom.unit_of_work import Dispatch, UnitOfWork, unit_of_work

MAX_GROUP = 200  # emails per transaction
# A new email's row, its first job, and its recipients to look up on the suppression list.
Pending = tuple[dict[str, object], DeliveryJob, Check | None]


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
        self._groups: Coalescer[Pending, list[str]] = Coalescer(self._store, max_items=MAX_GROUP)

    def transaction(self) -> AbstractAsyncContextManager[UnitOfWork]:
        """A transaction of its own, for a request that cannot share one."""
        return unit_of_work(self._sessions, self._dispatch)

    async def store(
        self, row: dict[str, object], job: DeliveryJob, check: Check | None = None
    ) -> list[str]:
        """Return once the email is committed and its job dispatched (or handed to the sweeper).

        ``check``: its recipients to look up on the suppression list, in the group's own
        transaction; returns those suppressed (left out of its envelope).
        """
        return await self._groups.submit((row, job, check))

    async def _store(self, items: list[Pending]) -> list[list[str]]:
        async with unit_of_work(self._sessions, self._dispatch) as uow:
            found = await suppression_check.found_in_group(
                uow.session, [check for _, _, check in items], datetime.now(UTC)
            )
            suppressed = [suppression_check.of_check(check, found) for _, _, check in items]
            for (row, _, _), left_out in zip(items, suppressed, strict=True):
                mark_suppressed(row, left_out)
            # Emails of many requests: their batch jobs carry no single request's id.
            stored: list[Stored] = [(row, job) for row, job, _ in items]
            jobs = first_jobs(stored, batch_job_size=self._batch_job_size)
            await transitions_repository.add_emails(uow.session, [row for row, _ in stored])
            for job in jobs:
                uow.dispatch_after_commit(job)
        return suppressed
