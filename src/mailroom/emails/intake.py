"""Group commit for POST /send: concurrent requests' emails stored in one transaction.

Each request still answers only after its email is committed (and its job handed
to Redis), exactly as with a transaction of its own; the requests that arrive
while a group is being written simply share the next one. This takes a BEGIN, an
INSERT and a COMMIT round trip, and a pass through the ORM's session machinery,
off each request. A group that fails (the database went away) fails every
request in it with the same error, and none of their emails is stored.

Requests with an Idempotency-Key or attachments keep a transaction of their own:
the first must reserve its key in the same transaction, and the second should not
make small emails wait behind megabytes.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.coalescer import Coalescer
from mailroom.emails import repository
from mailroom.queue.jobs import DeliveryJob
from mailroom.unit_of_work import Dispatch, unit_of_work

MAX_GROUP = 200  # emails per transaction

_Item = tuple[dict[str, object], DeliveryJob]


class Intake:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], dispatch: Dispatch) -> None:
        self._sessions = sessions
        self._dispatch = dispatch
        self._groups: Coalescer[_Item, None] = Coalescer(self._store, max_items=MAX_GROUP)

    async def store(self, row: dict[str, object], job: DeliveryJob) -> None:
        """Return once the email is committed and its job dispatched (or handed to the sweeper)."""
        await self._groups.submit((row, job))

    async def _store(self, items: list[_Item]) -> list[None]:
        async with unit_of_work(self._sessions, self._dispatch) as uow:
            await repository.add_emails(uow.session, [row for row, _ in items])
            for _, job in items:
                uow.dispatch_after_commit(job)
        return [None] * len(items)
