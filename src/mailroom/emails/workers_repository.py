"""SQL of the worker registry: worker processes' heartbeats, and which claims they vouch for.

A worker process keeps one row in ``workers`` and renews its ``heartbeat_at`` every
WORKER_REGISTRY_INTERVAL. An email in ``sending`` names its claiming process in
``emails.worker_id``; ``abandoned`` is the one definition of a claim nobody holds any
more, shared by the claim (which takes such emails over) and the sweeper (which
re-dispatches them). Every time is the database's ``now()``: worker clocks never count.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import ColumnElement, and_, delete, exists, func, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from mailroom.emails.models import Email, WorkerProcess
from mailroom.emails.states import RECLAIMABLE_STATUS


def abandoned(takeover: timedelta) -> ColumnElement[bool]:
    """A ``sending`` email whose lease ran out, or whose worker's heartbeat is stale.

    An email claimed without a registered worker (``worker_id`` null) waits for its
    lease alone. A worker row that is gone counts as stale.
    """
    alive = exists().where(
        WorkerProcess.id == Email.worker_id,
        WorkerProcess.heartbeat_at >= func.now() - takeover,
    )
    return and_(
        Email.status == RECLAIMABLE_STATUS.value,
        or_(
            Email.lease_expires_at < func.now(),
            and_(Email.worker_id.is_not(None), ~alive),
        ),
    )


async def beat(session: AsyncSession, worker_id: uuid.UUID, *, host: str, pid: int) -> None:
    """Register the worker, or renew its heartbeat (a row forgotten meanwhile comes back)."""
    stmt = pg_insert(WorkerProcess).values(id=worker_id, host=host, pid=pid)
    stmt = stmt.on_conflict_do_update(
        index_elements=[WorkerProcess.id], set_={"heartbeat_at": func.now()}
    )
    await session.execute(stmt)


async def unregister(session: AsyncSession, worker_id: uuid.UUID) -> None:
    await session.execute(delete(WorkerProcess).where(WorkerProcess.id == worker_id))


async def forget_dead(session: AsyncSession, *, older_than: timedelta) -> int:
    """Delete the rows of workers silent for ``older_than``; returns how many.

    Their emails are abandoned either way (a missing worker counts as stale), so this
    only keeps the table to the processes that may still be running.
    """
    result = await session.execute(
        delete(WorkerProcess).where(WorkerProcess.heartbeat_at < func.now() - older_than)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def alive(session: AsyncSession, *, takeover: timedelta) -> int:
    """How many worker processes have renewed their heartbeat within ``takeover``."""
    found = await session.scalar(
        select(func.count())
        .select_from(WorkerProcess)
        .where(WorkerProcess.heartbeat_at >= func.now() - takeover)
    )
    return found or 0
