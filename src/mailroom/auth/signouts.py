"""Dashboard sessions ended by "Sign out", so that a copy of their cookie stops working.

A session's cookie is signed and self-contained; ending it early needs a record on the
server. Only ended sessions are recorded (not every session), each until the moment its
cookie would have expired anyway: after that the cookie's own expiry refuses it, so the row
says nothing more. Expired rows are deleted by the next sign-out (the table holds at most
the sign-outs of the last DASHBOARD_SESSION_HOURS, so that delete stays small), which keeps
this out of the retention job and needs no index beyond the primary key.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from mailroom.auth.models import DashboardSignout


async def end_session(
    session: AsyncSession, session_id: str, expires_at: datetime, *, now: datetime
) -> None:
    """Record the session as ended (again: no error), and forget ended sessions that
    have expired since."""
    await session.execute(delete(DashboardSignout).where(DashboardSignout.expires_at <= now))
    await session.execute(
        insert(DashboardSignout)
        .values(session_id=session_id, expires_at=expires_at)
        .on_conflict_do_nothing(index_elements=[DashboardSignout.session_id])
    )
    await session.flush()


async def is_ended(session: AsyncSession, session_id: str) -> bool:
    """Whether this session was signed out: one primary-key lookup."""
    found = await session.execute(
        select(DashboardSignout.session_id).where(DashboardSignout.session_id == session_id)
    )
    return found.first() is not None
