"""The transaction boundary shared by HTTP requests and worker jobs.

Work happens in one session; jobs it wants dispatched are collected and handed to
Redis only after the commit succeeded, so a job can never point at a row that was
rolled back, and an email is never acknowledged before it is stored.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.queue.jobs import Job

Dispatch = Callable[[Sequence[Job]], Awaitable[bool]]


@dataclass
class UnitOfWork:
    session: AsyncSession
    jobs: list[Job] = field(default_factory=list)

    def dispatch_after_commit(self, job: Job) -> None:
        self.jobs.append(job)


@asynccontextmanager
async def unit_of_work(
    sessions: async_sessionmaker[AsyncSession], dispatch: Dispatch
) -> AsyncIterator[UnitOfWork]:
    async with sessions() as session:
        uow = UnitOfWork(session)
        try:
            yield uow
            await session.commit()
        except BaseException:
            await session.rollback()
            raise
    if uow.jobs:
        await dispatch(uow.jobs)
