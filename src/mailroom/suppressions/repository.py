"""SQL of the suppression list. Functions flush, never commit: the caller's transaction does.

Every lookup goes through the unique index on (project_id, address): sending asks for a
request's recipients in one ``address = ANY(...)`` query, whatever the list's size.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, delete, or_, select, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from mailroom.db.text_search import contains
from mailroom.suppressions.models import Suppression


@dataclass(frozen=True)
class NewSuppression:
    address: str  # normalized
    reason: str
    email_id: uuid.UUID | None = None
    expires_at: datetime | None = None


_insert = pg_insert(Suppression)
# Built once (compiled once, then cached), the rows bound per call.
_UPSERT = _insert.on_conflict_do_update(
    index_elements=[Suppression.project_id, Suppression.address],
    set_={
        "reason": _insert.excluded.reason,
        "email_id": _insert.excluded.email_id,
        "created_at": _insert.excluded.created_at,
        "expires_at": _insert.excluded.expires_at,
    },
    where=Suppression.expires_at.is_not(None),
).returning(Suppression)


def _active(now: datetime) -> ColumnElement[bool]:
    return or_(Suppression.expires_at.is_(None), Suppression.expires_at > now)


async def suppressed_among(
    session: AsyncSession, list_id: uuid.UUID, addresses: Sequence[str], now: datetime
) -> set[str]:
    """Which of these (normalized) addresses the list suppresses now."""
    if not addresses:
        return set()
    stmt = select(Suppression.address).where(
        Suppression.project_id == list_id,
        Suppression.address.in_(sorted(set(addresses))),
        _active(now),
    )
    return set((await session.execute(stmt)).scalars())


async def add(
    session: AsyncSession, list_id: uuid.UUID, rows: Sequence[NewSuppression], now: datetime
) -> list[Suppression]:
    """Put these addresses on the list; returns the rows written.

    An address already suppressed for good keeps its entry (its first cause); one whose
    entry expires (or has expired) takes the new one.
    """
    if not rows:
        return []
    unique = {r.address: r for r in rows}  # one row per address per statement
    params = [
        {
            "project_id": list_id,
            "address": r.address,
            "reason": r.reason,
            "email_id": r.email_id,
            "created_at": now,
            "expires_at": r.expires_at,
        }
        for r in unique.values()
    ]
    written = list(await session.scalars(_UPSERT, params))
    await session.flush()
    return written


async def get(
    session: AsyncSession, list_id: uuid.UUID, address: str, now: datetime
) -> Suppression | None:
    stmt = select(Suppression).where(
        Suppression.project_id == list_id, Suppression.address == address, _active(now)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def remove(session: AsyncSession, list_id: uuid.UUID, address: str) -> bool:
    stmt = (
        delete(Suppression)
        .where(Suppression.project_id == list_id, Suppression.address == address)
        .returning(Suppression.id)
    )
    return (await session.execute(stmt)).first() is not None


@dataclass(frozen=True)
class Page:
    rows: list[Suppression]
    has_more: bool


async def list_page(
    session: AsyncSession,
    list_id: uuid.UUID,
    *,
    now: datetime,
    limit: int,
    after: tuple[datetime, int] | None = None,
    reason: str | None = None,
    q: str | None = None,
) -> Page:
    """Newest first; ``after`` is the (created_at, id) of the last row of the previous page."""
    stmt = select(Suppression).where(Suppression.project_id == list_id, _active(now))
    if reason is not None:
        stmt = stmt.where(Suppression.reason == reason)
    if q:
        stmt = stmt.where(contains(Suppression.address, q))
    if after is not None:
        stmt = stmt.where(tuple_(Suppression.created_at, Suppression.id) < after)
    stmt = stmt.order_by(Suppression.created_at.desc(), Suppression.id.desc()).limit(limit + 1)
    rows = list((await session.execute(stmt)).scalars())
    return Page(rows[:limit], has_more=len(rows) > limit)


async def every_row(
    session: AsyncSession, list_id: uuid.UUID, now: datetime, chunk: int = 1000
) -> AsyncIterator[Suppression]:
    """The whole list, oldest first, a chunk at a time (for an export)."""
    last: tuple[datetime, int] | None = None
    while True:
        stmt = select(Suppression).where(Suppression.project_id == list_id, _active(now))
        if last is not None:
            stmt = stmt.where(tuple_(Suppression.created_at, Suppression.id) > last)
        stmt = stmt.order_by(Suppression.created_at, Suppression.id).limit(chunk)
        rows = list((await session.execute(stmt)).scalars())
        for row in rows:
            yield row
        if len(rows) < chunk:
            return
        last = (rows[-1].created_at, rows[-1].id)
