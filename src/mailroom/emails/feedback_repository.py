"""SQL of delivery feedback: its rows, the email it names, and the moves it causes.

Functions flush, never commit: the caller's transaction does.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from mailroom.emails.models import DeliveryFeedback, Email
from mailroom.emails.states import BOUNCE


@dataclass(frozen=True)
class Target:
    """The email a report names, with what deciding its outcome needs."""

    id: uuid.UUID
    project_id: uuid.UUID
    status: str
    recipients: list[str]
    suppressed_recipients: list[str]


_TARGET = (
    Email.id,
    Email.project_id,
    Email.status,
    Email.recipients,
    Email.suppressed_recipients,
)


async def find_email(
    session: AsyncSession, *, email_id: uuid.UUID | None, message_id: str | None
) -> Target | None:
    """By id (a VERP return path, a provider's metadata) first, else by Message-ID (unique)."""
    for column, value in ((Email.id, email_id), (Email.message_id, message_id)):
        if value is None:
            continue
        row = (await session.execute(select(*_TARGET).where(column == value))).one_or_none()
        if row is not None:
            return Target(*row)
    return None


async def insert(session: AsyncSession, row: dict[str, Any]) -> int | None:
    """The new row's id; None when the provider's event id was recorded already."""
    stmt = (
        pg_insert(DeliveryFeedback)
        .values(**row)
        .on_conflict_do_nothing(index_elements=["provider", "provider_event_id"])
        .returning(DeliveryFeedback.id)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def mark(session: AsyncSession, email_id: uuid.UUID, **flags: bool) -> None:
    """Set the log's ``bounced`` / ``complained`` flags (never the status: see ``bounce``)."""
    await session.execute(update(Email).where(Email.id == email_id).values(**flags))


async def hard_bounced(session: AsyncSession, email_id: uuid.UUID) -> set[str]:
    """The recipients (lower-cased) reported as hard bounces for this email."""
    stmt = select(func.lower(DeliveryFeedback.recipient)).where(
        DeliveryFeedback.email_id == email_id,
        DeliveryFeedback.kind == "bounced",
        DeliveryFeedback.bounce_type == "hard",
        DeliveryFeedback.recipient.is_not(None),
    )
    return {r for r in (await session.execute(stmt)).scalars() if r is not None}


async def bounce(session: AsyncSession, email_id: uuid.UUID) -> bool:
    """sent → bounced, guarded; False if the email is not (or no longer) ``sent``."""
    stmt = (
        update(Email)
        .where(Email.id == email_id, Email.status.in_([s.value for s in BOUNCE.sources]))
        .values(status=BOUNCE.target.value, bounced=True, updated_at=func.now())
        .returning(Email.id)
    )
    return (await session.execute(stmt)).first() is not None


async def unmatched(
    session: AsyncSession, *, limit: int, after: tuple[datetime, int] | None
) -> Sequence[DeliveryFeedback]:
    """Reports that named no known email, newest first."""
    stmt = select(DeliveryFeedback).where(DeliveryFeedback.email_id.is_(None))
    if after is not None:
        stmt = stmt.where(tuple_(DeliveryFeedback.received_at, DeliveryFeedback.id) < after)
    stmt = stmt.order_by(DeliveryFeedback.received_at.desc(), DeliveryFeedback.id.desc())
    return list((await session.execute(stmt.limit(limit))).scalars())
